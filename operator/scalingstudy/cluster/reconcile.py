"""One reconcile pass of a study, decided without I/O.

The shell gathers the observed state (the study's Jobs, its status, the results it just
collected for finished Jobs), calls `decide`, applies the actions, fits when `fit_due`
says so, and writes `build_status`. Everything is recomputed from the cluster on every
pass, so a restarted operator picks up exactly where the last one stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scalingstudy.cluster.observe import JobState
from scalingstudy.contract import STATUS_BYTES_MAX
from scalingstudy.plan import Plan, Trial
from scalingstudy.report_table import short
from scalingstudy.results import NOT_FITTABLE, fittable
from scalingstudy.scheduling import schedule
from scalingstudy.status import (
    Condition,
    DesignStatus,
    FitStatus,
    Phase,
    ScalingStudyStatus,
    TrialCounts,
    TrialRecord,
)

MAX_LISTED = 10  # trial names quoted in one aggregated Event
TOO_LARGE = "status too large"


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


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
    events: list[Event] = field(default_factory=list)

    def relevant(self) -> list[TrialRecord]:
        """The records of planned trials (a spec change may leave others behind)."""
        return list(self.plan.relevant(self.records).values())

    @property
    def final(self) -> bool:
        """Every trial has finished and the study did not fail: the fit is the last one.
        The one place that says so."""
        return self.finished and not self.failed_reason


def to_collect(jobs: Sequence[JobState], recorded: Mapping[str, TrialRecord]) -> list[JobState]:
    """Finished Jobs whose result is not in status yet: the shell reads these results."""
    return [j for j in jobs if j.phase in ("succeeded", "failed") and j.trial not in recorded]


def _names(trials: Sequence[str]) -> str:
    shown = ", ".join(trials[:MAX_LISTED])
    more = len(trials) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def started_event(created: Sequence[Trial]) -> Event | None:
    """The Event of the trials whose Jobs were created (None: none were)."""
    if not created:
        return None
    names = _names([t.name for t in created])
    return Event("Normal", "TrialsStarted", f"started {len(created)} trial(s): {names}")


def _trial_events(create: Sequence[Trial], new: Sequence[TrialRecord]) -> list[Event]:
    """The pass's planned starts (the shell replaces it by what it really created) and
    its results."""
    started = started_event(create)
    events: list[Event] = [started] if started else []
    ok = [r.trial for r in new if r.status == "Succeeded"]
    if ok:
        events.append(
            Event("Normal", "TrialsSucceeded", f"{len(ok)} trial(s) succeeded: {_names(ok)}")
        )
    events += [
        Event("Warning", "TrialFailed", f"{r.trial}: {r.reason}: {(r.message or '')[-400:]}")
        for r in new
        if r.status == "Failed"
    ]
    return events


def merged(
    recorded: Mapping[str, TrialRecord], collected: Sequence[TrialRecord]
) -> tuple[dict[str, TrialRecord], list[TrialRecord]]:
    """The records with the pass's collected ones (a trial recorded already keeps its
    record), and the new ones among them."""
    records = dict(recorded)
    new = [r for r in collected if r.trial not in records]
    records.update({r.trial: r for r in new})
    return records, new


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
    queued_on_create: bool = False,
) -> Pass:
    """Which Jobs to create or delete, what to record, whether to fit.

    ``fit`` is the fit in status (None: none yet); a refit is needed when the number of
    succeeded results it used changed, or when the study just finished and its fit is not
    final yet. ``more``: the design may still add trials to ``plan`` (an adaptive study
    waiting for results), so the study is not finished when the plan's trials are.
    ``queued_on_create``: new Jobs start suspended (Kueue), so they count as queued.
    Running Jobs of trials no longer planned (a spec change, a stopped adaptive study)
    are deleted.
    """
    records, new = merged(recorded, collected)
    by_trial = {j.trial: j for j in jobs}
    active = active_trials(jobs, records)
    # Finished Jobs whose result could not be read yet (waiting for a scrape) hold no slot
    # and are not started again; the study is not finished while any remain.
    uncollected = {
        j.trial for j in jobs if j.phase in ("succeeded", "failed") and j.trial not in records
    } & plan.names
    decision = schedule(plan, records, active, parallelism, max_failed, hold=uncollected)
    # Stop spending after too many failures: running trials finish, none start. A Job may
    # exist already for a trial to start (finished but not collected, or being deleted).
    create = () if decision.failed else tuple(t for t in decision.start if t.name not in by_trial)
    delete = tuple(sorted(j.name for j in jobs if j.trial in active and j.trial not in plan))
    relevant = list(plan.relevant(records).values())
    succeeded = sum(1 for r in relevant if r.status == "Succeeded")
    holding = [j for j in jobs if j.trial in plan and j.trial in active]
    running = sum(1 for j in holding if j.phase == "active")
    queued = sum(1 for j in holding if j.phase == "queued")
    counts = TrialCounts(
        total=len(plan),
        succeeded=succeeded,
        failed=len(relevant) - succeeded,
        running=running + (0 if queued_on_create else len(create)),
        queued=queued + (len(create) if queued_on_create else 0),
    )
    started = counts.succeeded + counts.failed + counts.running + counts.queued
    counts.pending = max(counts.total - started, 0)
    finished = (decision.finished and not uncollected and not more) or decision.failed
    final = finished and not decision.failed
    needs_fit = fittable(relevant) and (
        fit is None or fit.based_on_results != succeeded or (final and not fit.final)
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
        events=_trial_events(create, new),
    )


def fit_due(p: Pass, since_last_fit: float, interval: float) -> tuple[bool, float | None]:
    """Whether to fit now, and else when to come back: new results are fitted at most
    every ``interval`` seconds, the final fit at once."""
    if not p.needs_fit:
        return False, None
    if p.final or since_last_fit >= interval:
        return True, None
    return False, interval - since_last_fit


def phase_of(p: Pass, fit_error: str | None, fit_final: bool) -> tuple[Phase, str | None]:
    """The phase and, for Failed, the reason in one line."""
    if p.failed_reason:
        return "Failed", p.failed_reason
    if p.finished:
        if fit_error:
            return "Failed", f"fit failed: {fit_error}"
        return ("Succeeded", None) if fit_final else ("Fitting", None)
    if p.counts.running or p.counts.succeeded or p.counts.failed:
        return "Running", None
    return "Pending", None


_PROGRESSING_REASON: dict[Phase, str] = {
    "Pending": "TrialsPending",
    "Running": "TrialsRunning",
    "Fitting": "Fitting",
    "Succeeded": "Finished",
    "Failed": "Stopped",
}


def conditions_for(
    phase: Phase,
    reason: str | None,
    previous: Sequence[Condition],
    generation: int,
    now: str,
    spec_error: str | None = None,
    complete_reason: str | None = None,
) -> list[Condition]:
    """Kubernetes-style conditions; lastTransitionTime moves only when status changes.
    ``complete_reason``: why a Succeeded study ended (the design's stop reason)."""
    failed_kind = (
        "InvalidSpec"
        if spec_error
        else "FitFailed"
        if reason and reason.startswith("fit failed")
        else "StatusTooLarge"
        if reason and reason.startswith(TOO_LARGE)
        else "TooManyFailedTrials"
    )
    failed = phase == "Failed"
    wanted = [
        Condition(
            type="SpecValid",
            status="False" if spec_error else "True",
            reason="InvalidSpec" if spec_error else "Valid",
            message=spec_error,
        ),
        Condition(
            type="Progressing",
            status="True" if phase in ("Pending", "Running", "Fitting") else "False",
            reason=_PROGRESSING_REASON[phase],
        ),
        Condition(
            type="Complete",
            status="True" if phase == "Succeeded" else "False",
            reason=(complete_reason or "StudySucceeded") if phase == "Succeeded" else "NotFinished",
        ),
        Condition(
            type="Failed",
            status="True" if failed else "False",
            reason=failed_kind if failed else "NotFailed",
            message=reason if failed else None,
        ),
    ]
    return [stamped(cond, previous, generation, now) for cond in wanted]


def stamped(cond: Condition, previous: Sequence[Condition], generation: int, now: str) -> Condition:
    """The condition with its generation, and lastTransitionTime kept from the previous
    condition of its type while its status is unchanged (else ``now``)."""
    old = next((c for c in previous if c.type == cond.type), None)
    kept = old.last_transition_time if old and old.status == cond.status else None
    cond.last_transition_time = kept or now
    cond.observed_generation = generation
    return cond


def build_status(
    p: Pass,
    generation: int,
    before: ScalingStudyStatus,
    fit: FitStatus | None,
    fit_error: str | None,
    now: str,
    extra: Sequence[Condition] = (),
    design: DesignStatus | None = None,
) -> ScalingStudyStatus:
    """The status after a pass. ``fit`` is the new fit, or the one in status when none ran;
    a fit is final only while the study still is (a spec change may add trials).
    ``extra`` conditions (TrialsBlocked) follow the four of the phase; ``design`` is what
    the study's design chose and spent."""
    if fit is not None and fit.final and not p.final:
        fit = fit.model_copy(update={"final": False})
    final_error = fit_error if p.finished else None
    if p.final and fit is None and not final_error:
        final_error = NOT_FITTABLE
    phase, reason = phase_of(p, final_error, bool(fit and fit.final))
    order = {name: i for i, name in enumerate(p.records)}
    rows = sorted(
        p.records.values(), key=lambda r: (r.data_size, r.model_size, r.seed, order[r.trial])
    )
    done = p.counts.succeeded + p.counts.failed
    stop = design.stop_reason if design else None
    conditions = conditions_for(phase, reason, before.conditions, generation, now,
                                complete_reason=stop)  # fmt: skip
    return ScalingStudyStatus(
        phase=phase,
        observed_generation=generation,
        conditions=[*conditions, *extra],
        trials=p.counts,
        progress=f"{done}/{p.counts.total}",
        results=rows,
        fit=fit,
        design=design,
    )


def invalid_status(
    before: ScalingStudyStatus, generation: int, error: str, now: str
) -> ScalingStudyStatus | None:
    """A spec the CRD schema let through but the full validation rejects: Failed with the
    reason, every result kept. None when status says so already."""
    if before.observed_generation == generation and before.phase == "Failed":
        return None
    conditions = conditions_for("Failed", error, before.conditions, generation, now, error)
    return before.model_copy(
        update={"phase": "Failed", "observed_generation": generation, "conditions": conditions}
    )


def within_limit(after: ScalingStudyStatus, generation: int, now: str) -> ScalingStudyStatus:
    """The status as written, or, when it would not fit in one etcd object, the study
    Failed with the reason and without its fit (result rows are bounded so that the rows
    of MAX_TRIALS trials always fit: a status that could not be written would hang it)."""
    size = len(json.dumps(after.to_json(), ensure_ascii=False, separators=(",", ":")).encode())
    if size <= STATUS_BYTES_MAX:
        return after
    reason = f"{TOO_LARGE}: {size} bytes, above the {STATUS_BYTES_MAX} one object may take"
    conditions = conditions_for("Failed", reason, after.conditions, generation, now)
    return after.model_copy(update={"phase": "Failed", "fit": None, "conditions": conditions})


def refused(before: ScalingStudyStatus, generation: int) -> bool:
    """Whether this generation of the spec was already refused (by the operator's checks or
    the API server's refusal of a trial's Job): nothing more is tried until it changes."""
    valid = next((c for c in before.conditions if c.type == "SpecValid"), None)
    return valid is not None and valid.status == "False" and valid.observed_generation == generation


def status_events(
    p: Pass, before: ScalingStudyStatus, after: ScalingStudyStatus, fitted: bool
) -> list[Event]:
    """The pass's trial Events, the fit's when one ran, and the study's end once."""
    events = list(p.events)
    fit = after.fit
    if fitted and fit is not None:
        lc, ms = fit.learning_curve, fit.model_size
        events.append(
            Event(
                "Normal",
                "FitUpdated",
                f"{'final' if fit.final else 'interim'} fit of {fit.based_on_results} results: "
                f"beta_g={short(lc.beta if lc else None, 3)} {lc.beta_interval if lc else None}, "
                f"beta_p={short(ms.beta if ms else None, 3)}",
            )
        )
    if after.phase == before.phase:
        return events
    if after.phase == "Succeeded":
        beta = fit.learning_curve.beta if fit and fit.learning_curve else None  # 4 digits
        why = f" ({after.design.stop_reason})" if after.design and after.design.stop_reason else ""
        events.append(
            Event("Normal", "StudySucceeded", f"all trials finished{why}; beta_g = {beta}")
        )
    elif after.phase == "Failed":
        failed = next((c for c in after.conditions if c.type == "Failed"), None)
        message = failed.message or failed.reason if failed else None
        events.append(Event("Warning", "StudyFailed", message or "failed"))
    return events


def design_events(
    before: DesignStatus | None, after: DesignStatus | None, listed_max: int
) -> list[Event]:
    """Say when an adaptive study's window moves at a new data size, when it trains a
    model size beyond the listed ones, and when it stops starting trials."""
    if after is None:
        return []
    old = {w.data_size: w.model_sizes for w in (before.windows if before else [])}
    events: list[Event] = []
    previous: list[int] | None = None
    for w in after.windows:
        if w.data_size not in old and previous is not None and w.model_sizes != previous:
            events.append(Event(
                "Normal", "WindowMoved",
                f"data size {w.data_size}: model sizes {w.model_sizes} (was {previous})",
            ))  # fmt: skip
        beyond = [m for m in w.model_sizes if m > listed_max]
        if beyond and not [m for m in old.get(w.data_size, []) if m > listed_max]:
            events.append(Event(
                "Normal", "GridExtended",
                f"data size {w.data_size}: model size(s) {beyond} beyond the listed ones, "
                f"where the best model was at the largest",
            ))  # fmt: skip
        previous = w.model_sizes
    if after.stop_reason in ("TargetReached", "BudgetSpent") and (
        before is None or before.stop_reason != after.stop_reason
    ):
        events.append(Event(
            "Normal", "DesignStopped",
            f"{after.stop_reason}: no more trials start; spent {after.gpu_seconds:.0f} "
            f"GPU-seconds ({after.spend or '?'} of the full grid's estimate)",
        ))  # fmt: skip
    return events
