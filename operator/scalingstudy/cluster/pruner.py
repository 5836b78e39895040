"""The operator's pruning shell: read the running trials' curves from their pods' logs,
call the pure rule (`pruning.decide`), and write each decision on the trial's Job before
anything else (`pruning_pass.py` says why that order is restart-safe).

Only studies with ``spec.design.pruning.enabled`` are judged, each at most every
`PRUNE_INTERVAL` seconds; a finished trial's log is read once (cached by its Job's uid).
What the Pushgateway holds of a running trial's progress (group
``job="scalingstudy-progress"``) is never an input: it is only compared with the log, and
a disagreement is counted in ``scalingstudy_result_mismatches_total`` with a Warning
Event, as a result that disagrees with its termination message is.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from scalingstudy.cluster import pruning_pass as pp
from scalingstudy.cluster.kube import ApiError, Kube
from scalingstudy.cluster.manifests import LABEL_STUDY, Obj, StudyRef
from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.cluster.observe import JobState
from scalingstudy.cluster.pod_logs import PodLogs, pod_zero, pods_by_trial
from scalingstudy.cluster.prometheus import (
    PREFIX,
    Prometheus,
    PrometheusUnavailableError,
    promql_string,
    samples_by_trial,
)
from scalingstudy.cluster.reasons import Event, EventReason
from scalingstudy.contract import PROGRESS_PUSH_JOB
from scalingstudy.records import TrialRecord
from scalingstudy.spec import ScalingStudySpec
from scalingstudy_sdk.curve import Curve

log = logging.getLogger("scalingstudy.operator")


@dataclass(frozen=True)
class PruneStep:
    """What pruning adds to a pass: Pruned records for status, the Jobs to delete once
    status is written, its Events, and when to judge the study again."""

    records: tuple[TrialRecord, ...] = ()
    delete: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    wake_in: float | None = None


def progress_query(namespace: str, study: str) -> str:
    """The latest pushed progress of a study's running trials (display only)."""
    return (
        f'{{__name__=~"{PREFIX}.+",job="{PROGRESS_PUSH_JOB}",'
        f"namespace={promql_string(namespace)},study={promql_string(study)}}}"
    )


def pruned_event(records: Sequence[TrialRecord]) -> Event:
    """Names first (an Event's message is cut at 1 KiB), then where and why each stopped."""
    names = ", ".join(r.trial for r in records)
    why = "; ".join(f"{r.trial} at step {r.pruned_at_step}: {r.message}" for r in records)
    message = f"pruned {len(records)} trial(s): {names}. {why}"
    return Event("Normal", EventReason.TRIALS_PRUNED, message)


def forged_event(f: pp.Forged) -> Event:
    return Event(
        "Warning",
        EventReason.RESULT_MISMATCH,
        f"{f.trial}: its log says validation_loss = {f.log_value:.6g} at step {f.step}, the "
        f"pushed progress says {f.pushed_value:.6g}; pruning reads only the log (the "
        "Pushgateway accepts pushes from anyone who can reach it)",
    )


class Pruner:
    def __init__(
        self, kube: Kube, prometheus: Prometheus, metrics: OperatorMetrics,
        interval: float = pp.PRUNE_INTERVAL,
    ) -> None:  # fmt: skip
        self.kube, self.prometheus, self.metrics = kube, prometheus, metrics
        self.logs = PodLogs(kube)
        self.interval = interval
        self.last: dict[tuple[str, str], float] = {}
        #: Curves of finished trials, by (namespace, study) then Job uid: read once.
        self.finished: dict[tuple[str, str], dict[str, Curve]] = {}
        #: Disagreements already counted (trial, step): each is counted once.
        self.counted: dict[tuple[str, str], set[tuple[str, int]]] = {}

    def forget(self, namespace: str, name: str) -> None:
        for memo in (self.last, self.finished, self.counted):
            memo.pop((namespace, name), None)

    def step(
        self, ref: StudyRef, spec: ScalingStudySpec, jobs: Sequence[JobState],
        recorded: Mapping[str, TrialRecord],
    ) -> PruneStep:  # fmt: skip
        """Record what Jobs already carry, then judge the running trials when due."""
        carried = pp.to_record(jobs, recorded)
        settings = spec.design.pruning
        live = pp.running(jobs, recorded) if settings.enabled else []
        key = (ref.namespace, ref.name)
        wait = self.last.get(key, -1e9) + self.interval - time.monotonic()
        new: list[TrialRecord] = []
        events: list[Event] = []
        if live and wait <= 0:
            self.last[key] = time.monotonic()
            new, events = self._judge(ref, spec, jobs, live, recorded)
        records = [*carried, *new]
        gone = {r.trial for r in records}
        delete = pp.to_delete(jobs, recorded) + sorted(
            j.name for j in jobs if j.trial in gone and not j.deleting
        )
        if records:
            events.append(pruned_event(records))
        wake = (max(wait, 0.0) or self.interval) if live else None
        return PruneStep(tuple(records), tuple(sorted(set(delete))), tuple(events), wake)

    def _judge(
        self, ref: StudyRef, spec: ScalingStudySpec, jobs: Sequence[JobState],
        live: Sequence[JobState], recorded: Mapping[str, TrialRecord],
    ) -> tuple[list[TrialRecord], list[Event]]:  # fmt: skip
        try:
            pods = pods_by_trial(self.kube.list_pods(ref.namespace, f"{LABEL_STUDY}={ref.name}"))
            curves = self._curves(ref, jobs, live, recorded, pods)
        except ApiError as exc:  # e.g. a role without pods/log: pruning waits, nothing else
            log.warning("%s/%s: pruning waits: the trials' logs cannot be read: %s",
                        ref.namespace, ref.name, exc)  # fmt: skip
            return [], []
        events = self._check_progress(ref, curves)
        prunes = pp.judge(spec, live, recorded, curves)
        by_trial = {j.trial: j for j in live}
        out: list[TrialRecord] = []
        for prune in prunes:
            job = by_trial[prune.trial]
            ran = (None if job.started is None
                   else (dt.datetime.now(dt.UTC) - job.started).total_seconds())  # fmt: skip
            mark = pp.mark_of(prune, curves.get(prune.trial, Curve()), ran)
            if not self._annotate(ref, job, mark):
                continue
            record = pp.pruned_record(job, mark)
            if record is not None:
                out.append(record)
                log.info("%s/%s: pruned %s: %s", ref.namespace, ref.name, job.trial, mark.message)
        return out, events

    def _curves(
        self, ref: StudyRef, jobs: Sequence[JobState], live: Sequence[JobState],
        recorded: Mapping[str, TrialRecord], pods: Mapping[str, Sequence[Obj]],
    ) -> dict[str, Curve]:  # fmt: skip
        """Running trials' curves, read now; finished ones', read once."""
        cache = self.finished.setdefault((ref.namespace, ref.name), {})
        out: dict[str, Curve] = {}
        done = {j.trial: j for j in jobs if j.trial in recorded and j.uid}
        for job in [*live, *done.values()]:
            if job.uid in cache:
                out[job.trial] = cache[job.uid]
                continue
            pod = pod_zero(pods.get(job.trial, ()), job_uid=job.uid)
            curve = None if pod is None else self.logs.curve(ref.namespace, pod["metadata"]["name"])
            if curve is None:
                continue
            out[job.trial] = curve
            if job.trial in done and recorded[job.trial].status == "Succeeded":
                cache[job.uid] = curve
        return out

    def _annotate(self, ref: StudyRef, job: JobState, mark: pp.PruneMark) -> bool:
        """Write the decision on the Job (of that uid only); False: the Job is gone or
        is another one now, so nothing was decided."""
        path = f"/apis/batch/v1/namespaces/{ref.namespace}/jobs/{job.name}"
        annotations = {pp.PRUNED_ANNOTATION: mark.to_annotation()}
        body = {"metadata": {"uid": job.uid, "annotations": annotations}}
        try:
            status, _ = self.kube.request("PATCH", path, body=body,
                                          content_type="application/merge-patch+json",
                                          ok=(200, 404, 409))  # fmt: skip
        except ApiError as exc:
            log.warning("%s/%s: cannot mark %s pruned: %s", ref.namespace, ref.name, job.name,
                        exc.detail)  # fmt: skip
            return False
        return status == 200

    def _check_progress(self, ref: StudyRef, curves: Mapping[str, Curve]) -> list[Event]:
        """Compare pushed progress with the logs; count each disagreement once."""
        pushed = self._pushed(ref)
        seen = self.counted.setdefault((ref.namespace, ref.name), set())
        fresh = [f for f in pp.forged(pushed, curves) if (f.trial, f.step) not in seen]
        seen.update((f.trial, f.step) for f in fresh)
        if fresh:
            self.metrics.result_mismatches.labels(ref.namespace, ref.name).inc(len(fresh))
        return [forged_event(f) for f in fresh]

    def _pushed(self, ref: StudyRef) -> dict[str, dict[str, float]]:
        if not self.prometheus.url:
            return {}
        query = progress_query(ref.namespace, ref.name)
        try:
            r = self.prometheus.http.post(f"{self.prometheus.url}/api/v1/query",
                                          data={"query": query})  # fmt: skip
            r.raise_for_status()
            return samples_by_trial(r.json())
        except (httpx.HTTPError, ValueError, PrometheusUnavailableError) as exc:
            log.info("%s/%s: pushed progress not read: %s", ref.namespace, ref.name, exc)
            return {}
