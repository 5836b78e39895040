"""One reconcile pass of a study, decided without I/O.

The shell gathers the observed state (the study's Jobs, its status, the results it just
collected for finished Jobs), calls `decide`, fits when `fit_due` says so, writes the
status (`status_builder.py`), applies the actions and emits the Events
(`study_events.py`). Everything is recomputed from the cluster on every
pass, so a restarted operator picks up exactly where the last one stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass

from scalingstudy.cluster.observe import JobState
from scalingstudy.planning.plan import Plan, Trial
from scalingstudy.planning.scheduling import lapsed_prunes, schedule
from scalingstudy.results import fit_options, fittable
from scalingstudy.spec import ScalingStudySpec
from scalingstudy.status import (
    FitStatus,
    TrialCounts,
    TrialRecord,
)


@dataclass(frozen=True)
class Pass:
    """The actions of one pass and the facts the status is built from."""

    plan: Plan
    records: dict[str, TrialRecord]
    new_records: tuple[TrialRecord, ...]
    create: tuple[Trial, ...]
    delete: tuple[str, ...]
    counts: TrialCounts
    finished: bool
    failed_reason: str | None
    needs_fit: bool
    #: Succeeded results of planned trials: what a fit now would be based on.
    succeeded: int
    #: The fit in status was made with other fit settings than the spec's now (a finished
    #: study whose spec.fit changed): it does not describe this spec, so it is refitted at
    #: once, and dropped while no new fit could be made.
    stale_fit: bool = False

    def relevant(self) -> list[TrialRecord]:
        """The records of planned trials (a spec change may leave others behind)."""
        return list(self.plan.relevant(self.records).values())

    @property
    def final(self) -> bool:
        """Every trial has finished and the study did not fail: the fit is the last one.
        The one place that says so."""
        return self.finished and not self.failed_reason


def fit_settings(spec: ScalingStudySpec) -> str:
    """A digest of everything of the spec a fit's answer depends on besides the results:
    the fit options and how points are made of records (model sizes and their parameter
    counts, the design's compute). A fit in status made with another digest is stale."""
    made_of = {
        "options": asdict(fit_options(spec)),
        "modelSizes": spec.model_sizes.model_dump(mode="json"),
        "design": spec.design.model_dump(mode="json"),
    }
    text = json.dumps(made_of, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_collect(jobs: Sequence[JobState], recorded: Mapping[str, TrialRecord]) -> list[JobState]:
    """Finished Jobs whose result is not in status yet: the shell reads these results. Of
    a Job that carries a pruning decision only a success is a result (the trial finished
    before the decision reached it: its result wins); one that failed is its decision's
    (`pruning_pass.to_record`), and one being deleted has none to give (it is deleted once
    status holds its Pruned record; if that record is gone since, the decision lapsed and
    a new Job trains the trial): collected, either would be a failure of a killed pod."""
    return [
        j
        for j in jobs
        if j.phase in ("succeeded", "failed") and j.trial not in recorded
        and (j.pruned is None or (j.phase == "succeeded" and not j.deleting))
    ]  # fmt: skip


def merged(
    recorded: Mapping[str, TrialRecord], collected: Sequence[TrialRecord]
) -> tuple[dict[str, TrialRecord], list[TrialRecord]]:
    """The records with the pass's collected ones (a trial recorded already keeps its
    record), and the new ones among them."""
    records = dict(recorded)
    new = [r for r in collected if r.trial not in records]
    records.update({r.trial: r for r in new})
    return records, new


def without_lapsed(
    plan: Plan, records: dict[str, TrialRecord], new: list[TrialRecord]
) -> tuple[dict[str, TrialRecord], list[TrialRecord]]:
    """The records less the Pruned ones whose decision lapsed (`lapsed_prunes`: the rival
    failed or is no longer planned): status stops holding them and the trial is started
    again, by a new Job once its pruned Job is gone (`decide` creates no Job whose name a
    Job still holds, one being deleted included: it waits)."""
    lapsed = set(lapsed_prunes(plan, records))
    if not lapsed:
        return records, new
    kept = {t: r for t, r in records.items() if t not in lapsed}
    return kept, [r for r in new if r.trial not in lapsed]


def active_trials(jobs: Sequence[JobState], records: Mapping[str, TrialRecord]) -> set[str]:
    """Trials whose Jobs hold a parallelism slot: running, or queued (suspended: Kueue
    decides when they run), and not recorded."""
    return {j.trial for j in jobs if j.phase in ("active", "queued") and j.trial not in records}


def decide(
    plan: Plan,
    jobs: Sequence[JobState],
    recorded: Mapping[str, TrialRecord],
    collected: Sequence[TrialRecord],
    *,
    parallelism: int,
    max_failed: int,
    fit: FitStatus | None,
    more: bool = False,
    settings: str | None = None,
    deferred: Collection[str] = (),
) -> Pass:
    """Which Jobs to create or delete, what to record, whether to fit.

    ``fit`` is the fit in status (None: none yet); a refit is needed when the number of
    succeeded results it used changed, or when the study just finished and its fit is not
    final yet. ``more``: the design may still add trials to ``plan`` (an adaptive study
    waiting for results), so the study is not finished when the plan's trials are.
    ``settings``: the spec's `fit_settings` (None: not compared); a fit made with others
    is stale and refitted. ``deferred``: trials whose Job name another owner holds; they
    start after the others (`schedule`).
    ``queued_on_create``: new Jobs start suspended (Kueue), so they count as queued.
    Running Jobs of trials no longer planned (a spec change, a stopped adaptive study)
    are deleted.
    """
    records, new = without_lapsed(plan, *merged(recorded, collected))
    by_trial = {j.trial: j for j in jobs}
    active = active_trials(jobs, records)
    # Finished Jobs whose result could not be read yet (waiting for a scrape) hold no slot
    # and are not started again; the study is not finished while any remain.
    uncollected = {
        j.trial for j in jobs if j.phase in ("succeeded", "failed") and j.trial not in records
    } & plan.names
    decision = schedule(plan, records, active, parallelism, max_failed, hold=uncollected,
                        deferred=deferred)  # fmt: skip
    # Stop spending after too many failures: running trials finish, none start. A Job may
    # exist already for a trial to start (finished but not collected, or being deleted).
    create = () if decision.failed else tuple(t for t in decision.start if t.name not in by_trial)
    delete = tuple(sorted(j.name for j in jobs if j.trial in active and j.trial not in plan))
    relevant = list(plan.relevant(records).values())
    succeeded = sum(1 for r in relevant if r.status == "Succeeded")
    pruned = sum(1 for r in relevant if r.status == "Pruned")
    holding = [j for j in jobs if j.trial in plan and j.trial in active]
    running = sum(1 for j in holding if j.phase == "active")
    queued = sum(1 for j in holding if j.phase == "queued")
    counts = TrialCounts(
        total=len(plan),
        succeeded=succeeded,
        failed=len(relevant) - succeeded - pruned,
        pruned=pruned,
        running=running,
        queued=queued,
    )
    started = counts.succeeded + counts.failed + counts.pruned + counts.running + counts.queued
    counts.pending = max(counts.total - started, 0)
    finished = (decision.finished and not uncollected and not more) or decision.failed
    final = finished and not decision.failed
    stale = fit is not None and settings is not None and fit.settings != settings
    needs_fit = fittable(relevant) and (
        fit is None or stale or fit.based_on_results != succeeded or (final and not fit.final)
    )
    return Pass(
        plan=plan,
        records=records,
        new_records=tuple(new),
        create=create,
        delete=delete,
        counts=counts,
        finished=finished,
        failed_reason=decision.failed_reason,
        needs_fit=needs_fit,
        succeeded=succeeded,
        stale_fit=stale,
    )


def fit_due(p: Pass, since_last_fit: float, interval: float) -> tuple[bool, float | None]:
    """Whether to fit now, and else when to come back: new results are fitted at most
    every ``interval`` seconds, the final fit and a fit of changed settings at once."""
    if not p.needs_fit:
        return False, None
    if p.final or p.stale_fit or since_last_fit >= interval:
        return True, None
    return False, interval - since_last_fit
