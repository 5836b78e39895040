"""What the cluster says about a trial, read from its Job and pod objects. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from scalingstudy.cluster.manifests import (
    COMPLETION_INDEX,
    CONTAINER,
    LABEL_DATA_SIZE,
    LABEL_LEARNING_RATE,
    LABEL_MODEL_SIZE,
    LABEL_SEED,
    LABEL_TRIAL,
    Obj,
)
from scalingstudy.contract import EXIT_REASONS
from scalingstudy.planning.plan import Trial
from scalingstudy.records import TrialRecord
from scalingstudy.spec import GROUP

#: The annotation a pruned trial's Job carries (the decision, as JSON: `pruning_pass`).
PRUNED_ANNOTATION = f"{GROUP}/pruned"

JobPhase = Literal["queued", "active", "succeeded", "failed"]


@dataclass(frozen=True)
class JobState:
    trial: str
    name: str
    phase: JobPhase
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    reason: str | None = None
    message: str | None = None
    deleting: bool = False
    coordinates: tuple[int, int, int] | None = None  # data size, model size, seed (labels)
    learning_rate: float | None = None  # a swept learning rate (label)
    created: dt.datetime | None = None
    #: Whether the Job controller has made any pod for it (active, finished or going).
    has_pods: bool = True
    #: The Job object's uid: only pods it controls are its (`controlled_by`).
    uid: str = ""
    #: The pruning decision the Job carries (`pruning_pass.PRUNED_ANNOTATION`), if any.
    pruned: str | None = None

    @property
    def as_trial(self) -> Trial | None:
        if self.coordinates is None:
            return None
        return Trial(*self.coordinates, name=self.trial, learning_rate=self.learning_rate)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _condition(job: Obj, kind: str) -> Obj | None:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def label_coordinates(labels: Mapping[str, str]) -> tuple[int, int, int] | None:
    """(data size, model size, seed) as a trial's Job or pod labels say; None when a
    label is missing or not a number."""
    try:
        return (int(labels[LABEL_DATA_SIZE]), int(labels[LABEL_MODEL_SIZE]),
                int(labels[LABEL_SEED]))  # fmt: skip
    except (KeyError, ValueError):
        return None


def label_rate(labels: Mapping[str, str]) -> float | None:
    """The swept learning rate a trial's labels carry; None without one, or when it is
    not a number (the caller decides whether that makes the object no trial's)."""
    try:
        return float(labels[LABEL_LEARNING_RATE]) if LABEL_LEARNING_RATE in labels else None
    except ValueError:
        return None


def job_state(job: Obj) -> JobState:
    """Complete/Failed are terminal; a suspended Job without active pods is queued (Kueue
    has not admitted it, or took it back) and never counts as failed."""
    meta, spec, status = job["metadata"], job.get("spec", {}), job.get("status", {})
    trial = meta.get("labels", {}).get(LABEL_TRIAL, meta["name"])
    started = parse_time(status.get("startTime"))
    labels = meta.get("labels", {})
    coords = label_coordinates(labels)
    rate = label_rate(labels)
    counts = ("active", "ready", "terminating", "succeeded", "failed")
    common = {"trial": trial, "name": meta["name"], "started": started,
              "deleting": bool(meta.get("deletionTimestamp")), "coordinates": coords,
              "learning_rate": rate,
              "created": parse_time(meta.get("creationTimestamp")),
              "has_pods": any(status.get(k) for k in counts),
              "uid": str(meta.get("uid") or ""),
              "pruned": (meta.get("annotations") or {}).get(PRUNED_ANNOTATION)}  # fmt: skip
    if _condition(job, "Complete"):
        return JobState(
            phase="succeeded", finished=parse_time(status.get("completionTime")), **common
        )
    failed = _condition(job, "Failed")
    if failed:
        finished = parse_time(failed.get("lastTransitionTime"))
        return JobState(
            phase="failed",
            finished=finished,
            reason=failed.get("reason") or "Failed",
            message=failed.get("message"),
            **common,
        )
    if spec.get("suspend") and not status.get("active"):
        return JobState(phase="queued", **common)
    return JobState(phase="active", **common)


def controller_of(obj: Obj) -> Obj | None:
    """``obj``'s controller reference (the API server allows one), or None."""
    owners = obj.get("metadata", {}).get("ownerReferences") or []
    return next((o for o in owners if o.get("controller")), None)


def controlled_by(obj: Obj, uid: str) -> bool:
    """Whether ``obj`` (a pod) is controlled by the object of that uid (a trial's Job):
    labels can be copied by anyone and outlive a Job deleted and made again under the
    same name; the controller reference is set by the Job controller and names one Job."""
    return bool(uid) and (controller_of(obj) or {}).get("uid") == uid


@dataclass(frozen=True)
class ContainerEnd:
    """The trainer container's end as the kubelet reported it."""

    exit_code: int | None
    reason: str | None
    message: str
    finished: dt.datetime | None


def pod_outcome(pod: Obj) -> ContainerEnd | None:
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        if cs.get("name") != CONTAINER:
            continue
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get(
            "terminated"
        )
        if term:
            return ContainerEnd(
                exit_code=term.get("exitCode"),
                reason=term.get("reason"),
                message=term.get("message") or "",
                finished=parse_time(term.get("finishedAt")),
            )
    return None


def last_outcome(pods: Iterable[Obj]) -> ContainerEnd | None:
    """The most recently finished attempt (a Job may have retried)."""
    outcomes = [o for o in (pod_outcome(p) for p in pods) if o is not None]
    if not outcomes:
        return None
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return max(outcomes, key=lambda o: o.finished or epoch)


def success_message(pods: Iterable[Obj]) -> str | None:
    """The termination message of the pod that succeeded: the trainer's result JSON. Of a
    trial of several pods only pod 0 (global rank 0) reports; the others' say nothing."""
    for pod in pods:
        index = (pod.get("metadata", {}).get("annotations") or {}).get(COMPLETION_INDEX)
        if index not in (None, "0"):
            continue
        outcome = pod_outcome(pod)
        if outcome is not None and outcome.exit_code == 0:
            return outcome.message
    return None


def failure_reason(job: JobState, outcome: ContainerEnd | None) -> tuple[str, str]:
    """A short CamelCase reason and a message: what failed and the trainer's last words."""
    parts = [job.message or ""]
    reason = job.reason or "Failed"
    if outcome is not None:
        if outcome.reason == "OOMKilled":
            reason = "OOMKilled"
        elif outcome.exit_code in EXIT_REASONS:
            reason = EXIT_REASONS[outcome.exit_code]
        elif job.reason not in ("DeadlineExceeded",) and outcome.exit_code is not None:
            reason = f"ExitCode{outcome.exit_code}"
        if outcome.exit_code is not None:
            parts.append(f"exit code {outcome.exit_code}")
        if outcome.message.strip():
            parts.append(outcome.message.strip()[-1000:])
    return reason, "; ".join(p for p in parts if p)


#: The label Kueue puts on a Job's Workload: the Job's uid.
KUEUE_JOB_UID = "kueue.x-k8s.io/job-uid"


@dataclass(frozen=True)
class Admitted:
    """What a Job's Workload says of its past admissions: the seconds Kueue accumulated,
    and whether they include the last one (a Kueue that takes a finished Workload's
    admission back adds it too; v0.17 does not)."""

    seconds: float
    includes_last: bool = False

    def before_last(self, last: float | None) -> float:
        """The time admitted before the last attempt, which lasted ``last`` seconds."""
        if self.includes_last:
            return max(self.seconds - (last or 0.0), 0.0)
        return self.seconds


def admitted_before(workloads: Iterable[Obj]) -> dict[str, Admitted]:
    """Each Job's (by uid) time admitted before its Kueue preemptions: the Workload adds
    an admission's length to ``accumulatedPastExecutionTimeSeconds`` (v1beta1 spells it
    ``accumulatedPastExexcutionTimeSeconds``) when it takes the admission back, and the
    Job's own start time restarts on resume, so this is the time its record misses."""
    out: dict[str, Admitted] = {}
    for wl in workloads:
        uid = ((wl.get("metadata") or {}).get("labels") or {}).get(KUEUE_JOB_UID)
        status = wl.get("status") or {}
        seconds = status.get("accumulatedPastExecutionTimeSeconds",
                             status.get("accumulatedPastExexcutionTimeSeconds"))  # fmt: skip
        if not uid or not isinstance(seconds, int | float) or seconds <= 0:
            continue
        state = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        # A Kueue that takes a finished Workload's admission back adds that one too.
        finished = state.get("Finished") == "True" and state.get("Admitted") == "False"
        out[uid] = Admitted(float(seconds) + out.get(uid, Admitted(0.0)).seconds, finished)
    return out


def with_earlier(
    records: Iterable[TrialRecord], jobs: Iterable[JobState], admitted: Mapping[str, Admitted]
) -> list[TrialRecord]:
    """The records with the time their Jobs were admitted before a Kueue preemption."""
    uids = {j.trial: j.uid for j in jobs if j.uid}
    out = []
    for r in records:
        seen = admitted.get(uids.get(r.trial, ""))
        earlier = seen.before_last(r.duration_seconds) if seen else 0.0
        out.append(r.model_copy(update={"earlier_seconds": round(earlier, 3)}) if earlier else r)
    return out
