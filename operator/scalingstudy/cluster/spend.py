"""What a pass adds to a study's spend besides its records, decided without I/O: the runs
of Jobs it deletes before they end (`cancelled_runs`), the pruned runs of trials trained
again, and the ledger status keeps of them by Job uid (`open_ledger`, `bounded_ledger`)
so that a restarted or repeated pass counts each run once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from scalingstudy.cluster.observe import Admitted, JobState
from scalingstudy.cluster.reconcile import merged
from scalingstudy.status import CancelledRun, DesignStatus, TrialRecord


@dataclass(frozen=True)
class Spent:
    """Cancelled runs the design counts: those kept by Job uid, and the seconds of those
    whose Jobs are gone (`open_ledger`)."""

    runs: Sequence[CancelledRun]
    seconds: float


def lapsed_records(
    recorded: Mapping[str, TrialRecord], collected: Sequence[TrialRecord], kept: Collection[str]
) -> list[TrialRecord]:
    """The records a pass drops (``kept``: those it keeps): Pruned ones whose decision
    lapsed (`reconcile.without_lapsed`); their runs stay spent."""
    return [r for t, r in merged(recorded, collected)[0].items() if t not in kept]


def cancelled_runs(
    delete: Collection[str],
    jobs: Sequence[JobState],
    counted: Collection[str],
    now: dt.datetime,
    admitted: Mapping[str, Admitted],
) -> tuple[CancelledRun, ...]:
    """The runs of the Jobs this pass deletes before they end (``delete``: trials the
    plan no longer holds), each Job once (``counted``: uids already in status): the time
    since it started, and what Kueue says it was admitted before a preemption (a queued
    Job may have run before it was preempted)."""
    runs = []
    for j in jobs:
        if j.name not in delete or not j.uid or j.uid in counted or j.deleting:
            continue  # a Job already going was deleted, and counted, by an earlier pass
        ran = 0.0  # a Job whose pods were never made (a quota, a webhook) used nothing
        if j.phase == "active" and j.started is not None and j.has_pods:
            ran = max((now - j.started).total_seconds(), 0.0)
        seen = admitted.get(j.uid)
        seconds = ran + (seen.before_last(None) if seen else 0.0)
        if seconds > 0:
            runs.append(CancelledRun(trial=j.trial, job_uid=j.uid, seconds=round(seconds, 3)))
    return tuple(runs)


#: Cancelled runs status keeps by Job uid at most (about 140 bytes each): beyond it the
#: oldest fold into cancelledSeconds at once, so the largest status still fits; they
#: could then be counted again only if the operator died before deleting their Jobs.
LEDGER_MAX = 200


def bounded_ledger(runs: Sequence[CancelledRun], folded: float) -> tuple[list[CancelledRun], float]:
    """At most LEDGER_MAX runs kept by uid (the newest), the rest's seconds folded."""
    cut = max(len(runs) - LEDGER_MAX, 0)
    return list(runs[cut:]), folded + sum(c.seconds for c in runs[:cut])


def open_ledger(
    design: DesignStatus | None, jobs: Sequence[JobState]
) -> tuple[list[CancelledRun], float]:
    """The cancelled runs status keeps by Job uid (those whose Jobs are still listed: a
    pass may see one again until it is gone), and the seconds of those gone, folded."""
    if design is None:
        return [], 0.0
    listed = {j.uid for j in jobs}
    kept = [c for c in design.cancelled if c.job_uid in listed]
    gone = sum(c.seconds for c in design.cancelled if c.job_uid not in listed)
    return kept, design.cancelled_seconds + gone


def counted_jobs(jobs: Sequence[JobState], counted: Collection[str]) -> list[str]:
    """The Jobs whose runs status counts as cancelled that are still listed and not going:
    deleted whatever the plan says now (a revert may plan their trials again: new Jobs
    train them), so no pass prunes, collects or counts them again."""
    return [j.name for j in jobs if j.uid in counted and not j.deleting]
