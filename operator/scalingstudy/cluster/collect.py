"""Which result of a finished trial to trust, decided without I/O.

The trust model. The pod's termination message is written by the trial's own container
and read through the API server by whoever may read pods: it is the trial's result.
The Pushgateway accepts pushes from anyone who can reach it, so what Prometheus says is
never taken over a termination message: it is compared with it (a disagreement is
recorded as the message says, with a Warning Event and a metric), and used only when no
message can be read (the pod is gone, or its message is empty), marked unverified. Even
then a sample counts only when it is fresh: pushed after the Job started, so a retried
trial never inherits its predecessor's numbers. While the Pushgateway path is on and a
result may still be scraped, a finished Job without either is waited for for a grace
window before it is recorded as failed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scalingstudy.cluster.manifests import Obj
from scalingstudy.cluster.observe import (
    JobState,
    controlled_by,
    failure_reason,
    last_outcome,
    success_message,
)
from scalingstudy.cluster.reasons import Event, EventReason
from scalingstudy.contract import REASON_BAD_RESULT, ResultError, parse_result
from scalingstudy.status import TrialRecord

#: A pushed sample counts as this Job's when pushed no earlier than this before it started
#: (clock skew between the trainer's node and the API server).
FRESH_SLACK_SECONDS = 5.0
#: Relative difference above which the two sources of one result disagree (a float64
#: passes through the Pushgateway and Prometheus unchanged; this is only for rounding).
AGREE_REL = 1e-6
SOURCE_MESSAGE = "termination-message"
SOURCE_PROMETHEUS = "prometheus"

#: Per trial: result key -> value as Prometheus has it (push_time_seconds included).
Samples = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class CollectPolicy:
    metric: str
    #: Trainers push and a Prometheus is configured: a missing result may only be late.
    wait_for_scrape: bool
    grace_seconds: float
    #: Whether Prometheus answered this pass. While it does not (an outage, its circuit
    #: breaker), a result that only it can tell is waited for, never failed: not having
    #: been able to ask says nothing of the trial.
    reachable: bool = True
    #: Since when Prometheus has answered without a failure (None: unknown). The grace
    #: window runs from the later of the Job's end and this, so a trial that finished
    #: during an outage gets its full window once Prometheus is back.
    answering_since: dt.datetime | None = None
    #: Why Prometheus did not answer this pass (its error), when it did not.
    unreachable_because: str | None = None


@dataclass(frozen=True)
class Mismatch:
    """The two sources of one result disagree; the termination message's value is kept."""

    trial: str
    message_value: float
    prometheus_value: float


@dataclass(frozen=True)
class Collected:
    """Records of finished Jobs, the sources' disagreements, and when to come back for the
    Jobs still inside the grace window."""

    records: tuple[TrialRecord, ...]
    mismatches: tuple[Mismatch, ...]
    wake_in: float | None
    #: Succeeded trials without a termination message that wait for a Prometheus that
    #: does not answer, and its error: the study says so (`waiting_note`) instead of
    #: waiting in silence while the outage lasts.
    waiting_for_prometheus: tuple[str, ...] = ()
    prometheus_error: str | None = None

    def waiting_note(self) -> str | None:
        """One line for the study's Progressing condition, or None."""
        waiting = self.waiting_for_prometheus
        if not waiting:
            return None
        more = f" and {len(waiting) - 3} more" if len(waiting) > 3 else ""
        shown = ", ".join(waiting[:3]) + more
        why = f": {self.prometheus_error}" if self.prometheus_error else ""
        return (
            f"{len(waiting)} finished trial(s) ({shown}) left no termination message and "
            f"wait for their pushed result in Prometheus, which does not answer{why}"
        )


def _fresh(job: JobState, values: Mapping[str, float]) -> bool:
    pushed = values.get("push_time_seconds")
    return (
        pushed is None
        or job.started is None
        or pushed >= job.started.timestamp() - FRESH_SLACK_SECONDS
    )


def _pushed_loss(job: JobState, values: Mapping[str, float], metric: str) -> float | None:
    """The metric Prometheus has for this Job's own run, if any."""
    value = values.get(metric)
    if value is None or not _fresh(job, values) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def _agree(a: float, b: float) -> bool:
    return abs(a - b) <= AGREE_REL * max(abs(a), abs(b))


def _succeeded(
    job: JobState,
    pods: Sequence[Obj],
    values: Mapping[str, float],
    policy: CollectPolicy,
    now: dt.datetime,
) -> tuple[TrialRecord | None, Mismatch | None, float | None]:
    """A succeeded Job's record (None: wait), a disagreement, and how long to wait."""
    trial = job.as_trial
    assert trial is not None
    message = success_message(pods)
    pushed = _pushed_loss(job, values, policy.metric)
    if message:
        try:
            result = parse_result(message, policy.metric)
        except ResultError as exc:
            return TrialRecord.failed(trial, REASON_BAD_RESULT, str(exc), job.duration), None, None
        record = TrialRecord.succeeded(trial, result, job.duration, SOURCE_MESSAGE)
        if pushed is not None and not _agree(result.loss, pushed):
            return record, Mismatch(trial.name, result.loss, pushed), None
        return record, None, None
    if pushed is not None:
        result = parse_result(json.dumps(dict(values)), policy.metric)
        unverified = TrialRecord.succeeded(
            trial, result, job.duration, SOURCE_PROMETHEUS, verified=False
        )
        return unverified, None, None
    if policy.wait_for_scrape and job.finished is not None:
        if not policy.reachable:
            return None, None, policy.grace_seconds
        since = max(job.finished, policy.answering_since or job.finished)
        left = policy.grace_seconds - (now - since).total_seconds()
        if left > 0:
            return None, None, left
    reason = "no pod of the Job reported a termination message, and Prometheus has no result"
    return TrialRecord.failed(trial, REASON_BAD_RESULT, reason, job.duration), None, None


def collect(
    done: Sequence[JobState],
    pods: Mapping[str, Sequence[Obj]],
    samples: Samples,
    now: dt.datetime,
    policy: CollectPolicy,
) -> Collected:
    """Records of finished Jobs from their pods (by trial) and Prometheus's samples. Jobs
    without coordinate labels are not the operator's and are skipped. Of the pods with a
    trial's labels only those its current Job controls count: a pod left by an earlier
    Job of the same name, or a copy with the labels, says nothing of this Job's run."""
    records: list[TrialRecord] = []
    mismatches: list[Mismatch] = []
    waiting: list[str] = []
    wake_in: float | None = None
    for job in done:
        trial = job.as_trial
        if trial is None:
            continue
        own = [p for p in pods.get(job.trial, ()) if controlled_by(p, job.uid)]
        if job.phase != "succeeded":
            reason, message = failure_reason(job, last_outcome(own))
            records.append(TrialRecord.failed(trial, reason, message, job.duration))
            continue
        record, mismatch, wait = _succeeded(job, own, samples.get(job.trial, {}), policy, now)
        if record is not None:
            records.append(record)
        if mismatch is not None:
            mismatches.append(mismatch)
        if wait is not None:
            wake_in = wait if wake_in is None else min(wake_in, wait)
            if not policy.reachable:
                waiting.append(job.trial)
    return Collected(tuple(records), tuple(mismatches), wake_in, tuple(sorted(waiting)),
                     policy.unreachable_because if waiting else None)  # fmt: skip


def mismatch_events(mismatches: Sequence[Mismatch], metric: str) -> list[Event]:
    return [
        Event(
            "Warning",
            EventReason.RESULT_MISMATCH,
            f"{m.trial}: the termination message says {metric} = {m.message_value:.6g}, "
            f"Prometheus says {m.prometheus_value:.6g}; recorded the termination message's "
            "value (the Pushgateway accepts pushes from anyone who can reach it)",
        )
        for m in mismatches
    ]
