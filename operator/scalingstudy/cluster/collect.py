"""Which result of a finished trial to trust, decided without I/O.

Prometheus first: the trainer pushed its numbers to the Pushgateway and Prometheus
scraped them. A sample is used only when it is fresh (pushed after the Job started, so a
retried trial never inherits its predecessor's numbers). When the Pushgateway path is on
and Prometheus answers but has no sample yet, the result is waited for for a grace
window (a few scrape intervals); after it, or when Prometheus is unreachable, the pod's
termination message is read instead (the shell lists pods only for those Jobs).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scalingstudy.cluster.manifests import Obj
from scalingstudy.cluster.observe import JobState, failure_reason, last_outcome, success_message
from scalingstudy.contract import REASON_BAD_RESULT, ResultError, parse_result
from scalingstudy.status import TrialRecord

#: A pushed sample counts as this Job's when pushed no earlier than this before it started
#: (clock skew between the trainer's node and the API server).
FRESH_SLACK_SECONDS = 5.0

#: Per trial: result key -> value as Prometheus has it (push_time_seconds included).
Samples = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class CollectPolicy:
    metric: str
    #: Prometheus answered and trainers push: a missing sample may only be late.
    wait_for_scrape: bool
    grace_seconds: float


@dataclass(frozen=True)
class Collected:
    """Records read from Prometheus, the Jobs whose pods must be read, and when to come
    back for the ones still inside the grace window."""

    records: tuple[TrialRecord, ...]
    need_pods: tuple[JobState, ...]
    wake_in: float | None


def _fresh(job: JobState, values: Mapping[str, float]) -> bool:
    pushed = values.get("push_time_seconds")
    return (
        pushed is None
        or job.started is None
        or pushed >= job.started.timestamp() - FRESH_SLACK_SECONDS
    )


def _from_samples(job: JobState, values: Mapping[str, float], metric: str) -> TrialRecord | None:
    trial = job.as_trial
    if trial is None or job.phase != "succeeded" or metric not in values or not _fresh(job, values):
        return None
    try:
        result = parse_result(json.dumps(dict(values)), metric)
    except ResultError:
        return None
    return TrialRecord.succeeded(trial, result, job.duration, "prometheus")


def classify(
    done: Sequence[JobState], samples: Samples, now: dt.datetime, policy: CollectPolicy
) -> Collected:
    """Sort finished Jobs into results from Prometheus, Jobs to wait for, Jobs to read
    from pods. Jobs without coordinate labels are not the operator's and are skipped."""
    records: list[TrialRecord] = []
    need_pods: list[JobState] = []
    wake_in: float | None = None
    for job in done:
        if job.as_trial is None:
            continue
        record = _from_samples(job, samples.get(job.trial, {}), policy.metric)
        if record is not None:
            records.append(record)
            continue
        if job.phase == "succeeded" and policy.wait_for_scrape and job.finished is not None:
            left = policy.grace_seconds - (now - job.finished).total_seconds()
            if left > 0:
                wake_in = left if wake_in is None else min(wake_in, left)
                continue
        need_pods.append(job)
    return Collected(tuple(records), tuple(need_pods), wake_in)


def from_pods(job: JobState, pods: Sequence[Obj], metric: str) -> TrialRecord:
    """The record of a finished Job read from its pods: the termination message of the
    pod that succeeded, or why the last attempt failed."""
    trial = job.as_trial
    if trial is None:
        raise ValueError(f"Job {job.name} has no trial coordinates")
    if job.phase == "succeeded":
        message = success_message(pods)
        try:
            if message is None:
                raise ResultError("no pod of the Job reported a termination message")
            result = parse_result(message, metric)
        except ResultError as exc:
            return TrialRecord.failed(trial, REASON_BAD_RESULT, str(exc), job.duration)
        return TrialRecord.succeeded(trial, result, job.duration, "termination-message")
    reason, message = failure_reason(job, last_outcome(pods))
    return TrialRecord.failed(trial, reason, message, job.duration)
