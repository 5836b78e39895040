"""The scheduling decision shared by every executor: which trials to start next, and
whether the study is done or has failed. Pure: observed state in, schedule out."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from scalingstudy.planning.plan import Plan, Trial
from scalingstudy.pruning.arms import ArmKey, arm_of
from scalingstudy.status import CancelledRun, TrialRecord


@dataclass(frozen=True)
class Schedule:
    start: tuple[Trial, ...]
    finished: bool
    failed_reason: str | None

    @property
    def failed(self) -> bool:
        return self.failed_reason is not None


def lapsed_prunes(plan: Plan, records: Mapping[str, TrialRecord]) -> list[str]:
    """Pruned trials whose decision no longer stands: the competitor each could not beat
    has failed, or is no longer planned (a spec edit dropped its value). Such a trial
    may be the slot's winner after all, so its record is dropped and it is trained again
    (from its checkpoint where the trainer kept one). A competitor that was itself pruned
    keeps the decision: it lost to a third that beats both. Seeds of one arm (data size,
    model size, rate) were pruned together, on their mean (`pruning.arms`): when one's
    decision lapses, all the arm's pruned seeds are trained again, so that its mean
    never rests on a subset of them."""
    relevant = plan.relevant(records)
    lapsed: set[ArmKey] = set()
    for r in relevant.values():
        rival = r.pruned_against
        if r.status != "Pruned" or rival is None:
            continue
        rival_record = records.get(rival)
        if rival not in plan.names or (
            rival_record is not None and rival_record.status == "Failed"
        ):
            lapsed.add(arm_of(r))
    return sorted(n for n, r in relevant.items() if r.status == "Pruned" and arm_of(r) in lapsed)


def schedule(
    plan: Plan,
    records: Mapping[str, TrialRecord],
    active: Collection[str],
    parallelism: int,
    max_failed: int,
    hold: Collection[str] = (),
    deferred: Collection[str] = (),
) -> Schedule:
    """Start trials in plan order up to ``parallelism`` active ones; stop once more than
    ``max_failed`` have failed. Recorded trials are never started again, nor held ones
    (finished, result not read yet). ``deferred`` trials (their Job name is held by an
    object the study does not own) start after every other waiting trial, so one name
    taken never keeps the rest from starting; they still keep the study unfinished."""
    failures = [r for r in plan.relevant(records).values() if r.status == "Failed"]
    if len(failures) > max_failed:
        reasons = sorted({f.reason or "Failed" for f in failures})
        return Schedule(
            (),
            True,
            f"{len(failures)} trials failed (maxFailedTrials is {max_failed}); "
            f"reasons: {', '.join(reasons)}; last: {failures[-1].trial}: "
            f"{(failures[-1].message or '').strip()[-300:]}",
        )
    waiting = [
        t for t in plan if t.name not in records and t.name not in active and t.name not in hold
    ]
    running = [a for a in active if a in plan]
    room = max(parallelism - len(running), 0)
    order = [t for t in waiting if t.name not in deferred] + [
        t for t in waiting if t.name in deferred
    ]
    return Schedule(tuple(order[:room]), not waiting and not running, None)


def lapsed_runs(
    records: Sequence[TrialRecord], uids: Mapping[str, str] | None = None
) -> list[CancelledRun]:
    """Pruned records whose decision lapsed, as spent runs: the trial is trained again
    and its record leaves status, the time its pruned run used does not. Keyed by the
    pruned Job's uid where it is still listed (``uids``: by trial), so that a pass that
    sees that Job again counts the run once."""
    return [
        CancelledRun(trial=r.trial, seconds=round(r.seconds_used, 3),
                     job_uid=(uids or {}).get(r.trial) or f"lapsed:{r.trial}:{r.pruned_at_step}")
        for r in records if r.seconds_used > 0
    ]  # fmt: skip
