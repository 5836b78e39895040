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


@dataclass(frozen=True)
class CreateBlock:
    """Why the operator could not create what a trial needs: a Job name held by an
    object the study does not own, or a create the API server refused (403: RBAC, a
    ResourceQuota, a webhook). Said in TrialsBlocked, tried again with backoff."""

    reason: ConditionReason
    message: str


def _owner_of(existing: Obj) -> str:
    owners = existing.get("metadata", {}).get("ownerReferences") or []
    ctl = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if ctl is None:
        return "no owner"
    return f"owned by {ctl.get('kind')} {ctl.get('name')} (uid {ctl.get('uid')})"


def name_taken(trial: str, existing: Obj) -> CreateBlock:
    """A Job of the trial's name exists and is not the study's."""
    return CreateBlock(ConditionReason.JOB_NAME_TAKEN, (
        f"Job {existing.get('metadata', {}).get('name', trial)} exists and is not this "
        f"study's ({_owner_of(existing)}): trial {trial} cannot start; delete that Job or "
        "rename the study"
    ))  # fmt: skip


def create_refused(kind: str, name: str, detail: str) -> CreateBlock:
    """The API server refused a create (403), in its own words."""
    words = f"the API server refused to create {kind} {name}: {detail[:400]}"
    return CreateBlock(ConditionReason.CREATE_REFUSED, words)


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
    conflict: str | None = None, refused: CreateBlock | None = None,
) -> Condition:  # fmt: skip
    """TrialsBlocked: a ConfigMap conflict (``conflict``: why no Job can be created), a
    create that failed (``refused``: a name taken, a 403) or Jobs without pods; False when
    none holds. Recomputed every pass, so it clears itself."""
    if conflict:
        cond = Condition(type=CONDITION, status="True", reason=Refusal.CONFIG_MAP_CONFLICT,
                         message=conflict)  # fmt: skip
    elif refused is not None:
        cond = Condition(type=CONDITION, status="True", reason=refused.reason,
                         message=refused.message)  # fmt: skip
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
    or by another object (not on every pass)."""
    old: Mapping[str, Condition] = {c.type: c for c in before}
    was = old.get(CONDITION)
    same_words = after.reason == ConditionReason.PODS_NOT_CREATED or (
        was is not None and was.message == after.message
    )
    if after.status != "True" or (
        was is not None and was.status == "True" and was.reason == after.reason and same_words
    ):
        return None
    reason = (
        Refusal.CONFIG_MAP_CONFLICT
        if after.reason == Refusal.CONFIG_MAP_CONFLICT
        else EventReason.TRIALS_BLOCKED
    )
    return Event("Warning", reason, after.message or "trials have no pod")
