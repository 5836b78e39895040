"""Trials whose Job never gets a pod, and why: pure.

When the Job controller cannot create a trial's pod (Pod Security Admission refuses it, a
service account is missing, a quota is full) the Job stays active with no pod and the
study would sit at Running with no explanation. The reason is in the Job's Events
(FailedCreate, from the Job controller); after a grace period the study says so in a
`TrialsBlocked` condition and a Warning Event, and recovers by itself when pods appear.
A ConfigMap conflict (the name the trials mount is taken) blocks the study the same way
and clears itself when that object is gone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scalingstudy.cluster.manifests import Obj
from scalingstudy.cluster.observe import JobState, parse_time
from scalingstudy.cluster.reasons import ConditionReason, Event, EventReason, Refusal, stamped
from scalingstudy.status import Condition

CONDITION = "TrialsBlocked"
#: Jobs whose Events are read in one pass (the rest wait for the next).
MAX_EXAMINED = 5
MAX_SHOWN = 3


@dataclass(frozen=True)
class Blocked:
    trial: str
    message: str


def candidates(jobs: Sequence[JobState], now: dt.datetime, grace: float) -> list[JobState]:
    """Active (admitted, not suspended) Jobs with no pod for longer than ``grace``."""
    out = [
        j
        for j in jobs
        if j.phase == "active"
        and not j.has_pods
        and not j.deleting
        and j.created is not None
        and (now - j.created).total_seconds() > grace
    ]
    return sorted(out, key=lambda j: j.name)[:MAX_EXAMINED]


def why(job: JobState, events: Sequence[Obj]) -> Blocked:
    """The Job controller's latest word on the Job's pods (FailedCreate), or the fact."""
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)

    def when(e: Obj) -> dt.datetime:
        stamp = e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")
        return parse_time(stamp) or epoch

    warnings = [e for e in events if e.get("type") == "Warning"]
    if not warnings:
        return Blocked(job.trial, "the Job has no pod yet (no Event says why)")
    latest = max(warnings, key=when)
    return Blocked(job.trial, f"{latest.get('reason')}: {str(latest.get('message'))[:300]}")


def condition(
    blocked: Sequence[Blocked], previous: Sequence[Condition], generation: int, now: str,
    conflict: str | None = None,
) -> Condition:  # fmt: skip
    """TrialsBlocked: a ConfigMap conflict (``conflict``: why no Job can be created) or Jobs
    without pods; False when neither holds. Recomputed every pass, so it clears itself."""
    if conflict:
        cond = Condition(type=CONDITION, status="True", reason=Refusal.CONFIG_MAP_CONFLICT,
                         message=conflict)  # fmt: skip
    elif blocked:
        shown = "; ".join(f"{b.trial}: {b.message}" for b in blocked[:MAX_SHOWN])
        cond = Condition(
            type=CONDITION,
            status="True",
            reason=ConditionReason.PODS_NOT_CREATED,
            message=f"{len(blocked)} trial(s) have no pod: {shown}",
        )
    else:
        cond = Condition(type=CONDITION, status="False", reason=ConditionReason.PODS_CREATED)
    return stamped(cond, previous, generation, now)


def became_blocked(before: Sequence[Condition], after: Condition) -> Event | None:
    """A Warning Event when trials have just become blocked, or blocked for another reason
    (not on every pass)."""
    old: Mapping[str, Condition] = {c.type: c for c in before}
    was = old.get(CONDITION)
    if after.status != "True" or (
        was is not None and was.status == "True" and was.reason == after.reason
    ):
        return None
    reason = (
        Refusal.CONFIG_MAP_CONFLICT
        if after.reason == Refusal.CONFIG_MAP_CONFLICT
        else EventReason.TRIALS_BLOCKED
    )
    return Event("Warning", reason, after.message or "trials have no pod")
