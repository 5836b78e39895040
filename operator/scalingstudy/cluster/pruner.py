"""The operator's pruning shell: read the running trials' curves from their pods' logs,
call the pure rule (`pruning.decide`), and write each decision on the trial's Job before
anything else (`pruning_pass.py` says why that order is restart-safe).

Only studies with ``spec.design.pruning.enabled`` are judged, each at most every
`PRUNE_INTERVAL` seconds. Only running trials' logs are read every time; of a finished
trial the rule uses its recorded final and, to calibrate its forecasts, the curve of one
that succeeded: that log is read once (cached by its Job's uid, bounded), a failed or
pruned trial's never. What the Pushgateway holds of a running trial's progress (group
``job="scalingstudy-progress"``) is never an input: it is only compared with the log, and
each disagreement is counted in ``scalingstudy_result_mismatches_total``, with at most one
Warning Event a study a pass (a forger pushing many steps writes one Event, not many).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalingstudy.cluster import forgery
from scalingstudy.cluster import pruning_pass as pp
from scalingstudy.cluster.kube import ApiError, Kube
from scalingstudy.cluster.manifests import LABEL_STUDY, Obj, StudyRef
from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.cluster.observe import JobState, parse_time
from scalingstudy.cluster.pod_logs import PodLogs, pods_by_trial, pods_zero
from scalingstudy.cluster.prometheus import (
    PREFIX,
    PUSH_TIME,
    Prometheus,
    PrometheusUnavailableError,
    promql_string,
    samples_by_trial,
)
from scalingstudy.cluster.reasons import Event, EventReason
from scalingstudy.contract import PROGRESS_PUSH_JOB
from scalingstudy.records import TrialRecord
from scalingstudy.spec import ScalingStudySpec
from scalingstudy_sdk.contract import CURVE_GAUGE
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


#: An instant-vector answer with no sample.
EMPTY_VECTOR = {"status": "success", "data": {"resultType": "vector", "result": []}}


def progress_query(namespace: str, study: str) -> str:
    """The pushed progress of a study's running trials (display only): the latest
    evaluation's gauges and the curve so far."""
    return (
        f'{{__name__=~"{PREFIX}.+|{CURVE_GAUGE}|{PUSH_TIME}",job="{PROGRESS_PUSH_JOB}",'
        f"namespace={promql_string(namespace)},study={promql_string(study)}}}"
    )


def pruned_event(records: Sequence[TrialRecord]) -> Event:
    """Names first (an Event's message is cut at 1 KiB), then where and why each stopped."""
    names = ", ".join(r.trial for r in records)
    why = "; ".join(f"{r.trial} at step {r.pruned_at_step}: {r.message}" for r in records)
    message = f"pruned {len(records)} trial(s): {names}. {why}"
    return Event("Normal", EventReason.TRIALS_PRUNED, message)


class Pruner:
    def __init__(
        self, kube: Kube, prometheus: Prometheus, metrics: OperatorMetrics,
        interval: float = pp.PRUNE_INTERVAL,
    ) -> None:  # fmt: skip
        self.kube, self.prometheus, self.metrics = kube, prometheus, metrics
        self.logs = PodLogs(kube)
        self.interval = interval
        self.last: dict[tuple[str, str], float] = {}
        #: Curves of succeeded trials, by (namespace, study) then Job uid: read once.
        self.finished: dict[tuple[str, str], dict[str, tuple[str, Curve]]] = {}
        #: Per running trial, the steps of the forgeries counted (`forgery.unseen`).
        self.counted: dict[tuple[str, str], dict[str, frozenset[int]]] = {}

    def forget(self, namespace: str, name: str) -> None:
        for memo in (self.last, self.finished, self.counted):
            memo.pop((namespace, name), None)

    def step(
        self, ref: StudyRef, spec: ScalingStudySpec, jobs: Sequence[JobState],
        recorded: Mapping[str, TrialRecord],
    ) -> PruneStep:  # fmt: skip
        """Record what Jobs already carry, then judge the running trials when due."""
        settings = spec.design.pruning
        live = pp.running(jobs, recorded) if settings.enabled else []
        key = (ref.namespace, ref.name)
        wait = self.last.get(key, -1e9) + self.interval - time.monotonic()
        due = bool(live) and wait <= 0
        pods = self._pods(ref) if due or pp.unsettled(jobs, recorded) else {}
        # Pods unknown: an annotated trial may have finished by itself; it waits a pass.
        ended = (pp.ended_by_itself(jobs, recorded, pods) if pods is not None
                 else {j.trial for j in jobs if j.pruned is not None})  # fmt: skip
        carried = pp.to_record(jobs, recorded, ended)
        new: list[TrialRecord] = []
        events: list[Event] = []
        if due:
            self.last[key] = time.monotonic()
        if due and pods is not None:
            new, events = self._judge(ref, spec, jobs, live, recorded, pods)
        records = [*carried, *new]
        gone = {r.trial for r in records}
        delete = pp.to_delete(jobs, recorded) + sorted(
            j.name for j in jobs if j.trial in gone and not j.deleting
        )
        if records:
            events.append(pruned_event(records))
        wake = (max(wait, 0.0) or self.interval) if live else None
        return PruneStep(tuple(records), tuple(sorted(set(delete))), tuple(events), wake)

    def _pods(self, ref: StudyRef) -> dict[str, list[Obj]] | None:
        """The study's pods by trial; None: they cannot be listed (pruning waits)."""
        try:
            return pods_by_trial(self.kube.list_pods(ref.namespace, f"{LABEL_STUDY}={ref.name}"))
        except ApiError as exc:
            log.warning("%s/%s: pruning waits: the trials' pods cannot be listed: %s",
                        ref.namespace, ref.name, exc)  # fmt: skip
            return None

    def _judge(
        self, ref: StudyRef, spec: ScalingStudySpec, jobs: Sequence[JobState],
        live: Sequence[JobState], recorded: Mapping[str, TrialRecord],
        pods: Mapping[str, Sequence[Obj]],
    ) -> tuple[list[TrialRecord], list[Event]]:  # fmt: skip
        try:
            curves = self._curves(ref, jobs, live, recorded, pods)
        except ApiError as exc:  # e.g. a role without pods/log: pruning waits, nothing else
            log.warning("%s/%s: pruning waits: the trials' logs cannot be read: %s",
                        ref.namespace, ref.name, exc)  # fmt: skip
            return [], []
        events = self._check_progress(ref, curves, {j.trial for j in live}, _since(live, pods))
        prunes = pp.judge(ref.name, spec, live, recorded, curves)
        by_trial = {j.trial: j for j in live}
        out: list[TrialRecord] = []
        for prune in prunes:
            job = by_trial[prune.trial]
            ran = (None if job.started is None
                   else (dt.datetime.now(dt.UTC) - job.started).total_seconds())  # fmt: skip
            mark = pp.mark_of(prune, curves.get(prune.trial, Curve()), ran)
            fresh = self._annotate(ref, job, mark)
            if fresh is None:
                continue
            if pp.completed(fresh, pods.get(job.trial, ())):  # its result wins: collected
                log.info("%s/%s: %s finished before it was pruned", ref.namespace, ref.name,
                         job.trial)  # fmt: skip
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
        """Running trials' curves, read now; succeeded ones', read once (`pp.to_read_once`)."""
        out: dict[str, Curve] = {}
        for job in live:
            attempts = pods_zero(pods.get(job.trial, ()), job_uid=job.uid)
            curve = self.logs.trial_curve(ref.namespace, attempts) if attempts else None
            if curve is not None:
                out[job.trial] = curve
        key = (ref.namespace, ref.name)
        cache = dict(self.finished.get(key, {}))
        for job in pp.to_read_once(jobs, recorded, cache):
            attempts = pods_zero(pods.get(job.trial, ()), job_uid=job.uid)
            # No pod left: no curve, for good. A log its node did not serve: next pass.
            curve = self.logs.trial_curve(ref.namespace, attempts) if attempts else Curve()
            if curve is not None:
                cache[job.uid] = (job.trial, curve)
        self.finished[key] = pp.kept_curves(cache, recorded)
        for trial, curve in self.finished[key].values():
            if curve.points:
                out.setdefault(trial, curve)
        return out

    def _annotate(self, ref: StudyRef, job: JobState, mark: pp.PruneMark) -> Obj | None:
        """Write the decision on the Job (of that uid only) and return the Job as it is
        now (the PATCH's answer); None: the Job is gone or is another one now, so nothing
        was decided."""
        path = f"/apis/batch/v1/namespaces/{ref.namespace}/jobs/{job.name}"
        annotations = {pp.PRUNED_ANNOTATION: mark.to_annotation()}
        body = {"metadata": {"uid": job.uid, "annotations": annotations}}
        try:
            status, fresh = self.kube.request("PATCH", path, body=body,
                                              content_type="application/merge-patch+json",
                                              ok=(200, 404, 409))  # fmt: skip
        except ApiError as exc:
            log.warning("%s/%s: cannot mark %s pruned: %s", ref.namespace, ref.name, job.name,
                        exc.detail)  # fmt: skip
            return None
        return fresh if status == 200 else None

    def _check_progress(
        self, ref: StudyRef, curves: Mapping[str, Curve], live: set[str],
        since: Mapping[str, float] | None = None,
    ) -> list[Event]:  # fmt: skip
        """Compare pushed progress with the running trials' logs; count each disagreement
        once, in one Event a pass."""
        answer = self._pushed(ref)
        key = (ref.namespace, ref.name)
        own = {t: c for t, c in curves.items() if t in live}
        latest = forgery.current(samples_by_trial(answer), since or {})
        points = forgery.pushed_curves(answer)
        found = [*forgery.forged(latest, own), *forgery.forged_points(points, latest, own)]
        fresh, self.counted[key] = forgery.unseen(found, self.counted.get(key, {}), live)
        if fresh:
            self.metrics.result_mismatches.labels(ref.namespace, ref.name).inc(len(fresh))
        event = forgery.forged_event(fresh)
        return [] if event is None else [event]

    def _pushed(self, ref: StudyRef) -> Any:
        """Prometheus' answer to `progress_query`: an instant vector, empty where there
        is no Prometheus or it could not answer (nothing pushed is known, none counted)."""
        if not self.prometheus.url:
            return EMPTY_VECTOR
        try:
            return self.prometheus.instant(progress_query(ref.namespace, ref.name))
        except PrometheusUnavailableError as exc:
            log.info("%s/%s: pushed progress not read: %s", ref.namespace, ref.name, exc)
            return EMPTY_VECTOR


def _since(live: Sequence[JobState], pods: Mapping[str, Sequence[Obj]]) -> dict[str, float]:
    """When each running trial's current attempt began (its latest pod 0's creation, epoch
    seconds): a push from before it is an earlier attempt's."""
    out = {}
    for job in live:
        attempts = pods_zero(pods.get(job.trial, ()), job_uid=job.uid)
        meta = attempts[-1].get("metadata", {}) if attempts else {}
        made = parse_time(meta.get("creationTimestamp"))
        if made is not None:
            out[job.trial] = made.timestamp()
    return out
