"""The operator's shell: gather a study's state, call the pure pass, apply its actions.

One worker task per study runs passes one at a time, woken by events on the study or its
Jobs and at least every `resync_seconds`; events arriving together are coalesced into one
pass (`batch_window`), which is what keeps API writes per trial low. A pass runs in a
thread because the Kubernetes client and the fit are blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from scalingstudy.cluster.decision import (
    Event,
    Pass,
    conditions_for,
    fit_status,
    phase_of,
    plan_pass,
    summary_event,
    to_collect,
)
from scalingstudy.cluster.fitproc import run_fit
from scalingstudy.cluster.kube import Kube, Obj
from scalingstudy.cluster.manifests import (
    LABEL_STUDY,
    LABEL_TRIAL,
    JobSettings,
    StudyRef,
    job_manifest,
)
from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.cluster.observe import (
    JobState,
    failure_reason,
    job_state,
    last_outcome,
    success_message,
)
from scalingstudy.cluster.prometheus import Prometheus, PrometheusUnavailableError
from scalingstudy.contract import ResultError, parse_result
from scalingstudy.fitting import FitError
from scalingstudy.plan import plan_trials
from scalingstudy.results import TrialRecord, fit_options, points_of
from scalingstudy.spec import ScalingStudySpec, SpecError, parse_spec

log = logging.getLogger("scalingstudy.operator")
Key = tuple[str, str]


@dataclass(frozen=True)
class ControllerConfig:
    job: JobSettings = field(default_factory=JobSettings)
    resync_seconds: float = 30.0
    batch_window: float = 0.5
    fit_interval: float = 10.0
    #: How long to wait for Prometheus to scrape a finished trial's pushed result before
    #: reading the termination message instead (a few scrape intervals).
    result_grace: float = 15.0


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Outcome:
    exists: bool
    wake_in: float | None = None


class Controller:
    def __init__(
        self, kube: Kube, prometheus: Prometheus, metrics: OperatorMetrics, config: ControllerConfig
    ) -> None:
        self.kube = kube
        self.prometheus = prometheus
        self.metrics = metrics
        self.config = config
        self.workers: dict[Key, asyncio.Task[None]] = {}
        self.triggers: dict[Key, asyncio.Event] = {}
        self.last_fit: dict[Key, float] = {}
        self.heartbeat = [time.monotonic()]
        self.exported: dict[str, int] = {}

    # -- the async side ------------------------------------------------------------------
    def poke(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        trigger = self.triggers.setdefault(key, asyncio.Event())
        trigger.set()
        if key not in self.workers or self.workers[key].done():
            self.workers[key] = asyncio.create_task(
                self._work(key), name=f"study {namespace}/{name}"
            )

    def drop(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        task = self.workers.pop(key, None)
        if task is not None:
            task.cancel()
        self.triggers.pop(key, None)
        self.last_fit.pop(key, None)
        self.metrics.forget_study(namespace, name)

    async def stop(self) -> None:
        tasks = list(self.workers.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _work(self, key: Key) -> None:
        trigger = self.triggers[key]
        wait = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(trigger.wait(), timeout=wait)
            await asyncio.sleep(self.config.batch_window)
            trigger.clear()
            started = time.monotonic()
            try:
                outcome = await asyncio.to_thread(self.reconcile, *key)
                self.metrics.reconciles.labels("ok").inc()
            except Exception:  # one study's trouble must never stop the others
                log.exception("reconcile of %s/%s failed; retrying", *key)
                self.metrics.reconciles.labels("error").inc()
                outcome = Outcome(True, wake_in=5.0)
            finally:
                self.metrics.reconcile_seconds.observe(time.monotonic() - started)
                self.heartbeat[0] = time.monotonic()
                self.metrics.last_pass.set(time.time())
            if not outcome.exists:
                self.triggers.pop(key, None)
                self.workers.pop(key, None)
                self.metrics.forget_study(*key)
                return
            wait = min(self.config.resync_seconds, outcome.wake_in or self.config.resync_seconds)

    # -- one pass (blocking, in a thread) ------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> Outcome:
        obj = self.kube.get_study(namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return Outcome(False)
        meta = obj["metadata"]
        ref = StudyRef(name, namespace, meta["uid"])
        generation = int(meta.get("generation", 0))
        status: Obj = obj.get("status") or {}
        try:
            spec = parse_spec(obj.get("spec"))
        except SpecError as exc:
            self._invalid(ref, generation, status, str(exc))
            return Outcome(True)
        recorded = {row["trial"]: TrialRecord.from_json(row) for row in status.get("results") or []}
        planned = plan_trials(name, spec)
        jobs = [
            job_state(j)
            for j in self.kube.list_jobs(namespace, f"{LABEL_STUDY}={name}")
            if _owned_by(j, ref.uid)
        ]
        collected, wake_in = self._collect(ref, spec, to_collect(jobs, recorded))
        fit_before: Obj = status.get("fit") or {}
        p = plan_pass(
            planned,
            jobs,
            recorded,
            collected,
            parallelism=spec.parallelism,
            max_failed=spec.max_failed_trials,
            fitted_results=fit_before.get("basedOnResults"),
            final_fit=bool(fit_before.get("final")),
        )
        fit, fit_error, fit_wake = self._maybe_fit((namespace, name), spec, planned, p, fit_before)
        if fit_wake is not None:
            wake_in = min(wake_in or fit_wake, fit_wake)
        new_status = self._status(p, spec, generation, status, fit, fit_error)
        events = list(p.events)
        if fit is not None and fit is not fit_before:
            events.append(_fit_event(fit))
        summary = summary_event(
            new_status["phase"], status.get("phase"), _failed_message(new_status), fit
        )
        if summary:
            events.append(summary)
        if _changed(status, new_status):
            # Results reach status before anything else happens: a crash after this line
            # loses nothing, and one before it only repeats the collection.
            self.kube.patch_study_status(namespace, name, new_status)
        self.metrics.observe_study(namespace, name, new_status)
        gpus = gpus_per_trial(spec)
        for rec in p.new_records:
            self.metrics.result_source.labels(rec.source or "none").inc()
            if rec.duration_seconds is not None:
                self.metrics.trial_seconds.labels(namespace, name, rec.status).observe(
                    rec.duration_seconds
                )
                if gpus:
                    self.metrics.gpu_seconds.labels(namespace, name).inc(
                        gpus * rec.duration_seconds
                    )
            self.prometheus.delete_group(namespace, name, rec.trial)
        for job_name in p.delete:
            self.kube.delete_job(namespace, job_name)
        for trial in p.create:
            self.kube.create_job(job_manifest(ref, spec, trial, self.config.job))
        stamp = now_rfc3339()
        for event in events:
            self.kube.emit(ref, event, stamp)
        self._sync_requests()
        return Outcome(True, wake_in)

    def _sync_requests(self) -> None:
        for verb, count in list(self.kube.requests.items()):
            delta = count - self.exported.get(verb, 0)
            if delta > 0:
                self.metrics.api_requests.labels(verb).inc(delta)
                self.exported[verb] = count

    def _collect(
        self, ref: StudyRef, spec: ScalingStudySpec, done: list[JobState]
    ) -> tuple[list[TrialRecord], float | None]:
        """Results of finished Jobs: Prometheus first, the pod's termination message when
        Prometheus is unreachable or (after a grace period) has no sample."""
        if not done:
            return [], None
        samples: dict[str, dict[str, float]] = {}
        reachable = False
        if any(j.phase == "succeeded" for j in done) and self.prometheus.url:
            try:
                samples = self.prometheus.study_results(ref.namespace, ref.name)
                reachable = True
            except PrometheusUnavailableError as exc:
                log.warning("%s/%s: %s; using termination messages", ref.namespace, ref.name, exc)
        waiting_for_scrape = bool(
            self.prometheus.url and self.config.job.pushgateway_url and reachable
        )
        now = dt.datetime.now(dt.UTC)
        records: list[TrialRecord] = []
        need_pods: list[JobState] = []
        wake_in: float | None = None
        for job in done:
            trial = job.as_trial
            if trial is None:
                continue
            values = samples.get(job.trial, {})
            pushed = values.get("push_time_seconds")
            fresh = pushed is None or job.started is None or pushed >= job.started.timestamp() - 5
            if job.phase == "succeeded" and spec.metric.name in values and fresh:
                try:
                    result = parse_result(json.dumps(values), spec.metric.name)
                    records.append(TrialRecord.succeeded(trial, result, job.duration, "prometheus"))
                    continue
                except ResultError:
                    pass
            if job.phase == "succeeded" and waiting_for_scrape and job.finished is not None:
                left = self.config.result_grace - (now - job.finished).total_seconds()
                if left > 0:
                    wake_in = min(wake_in or left, left)
                    continue
            need_pods.append(job)
        if need_pods:
            selector = f"{LABEL_TRIAL} in ({','.join(sorted(j.trial for j in need_pods))})"
            pods_by_trial: dict[str, list[Obj]] = {}
            for pod in self.kube.list_pods(ref.namespace, f"{LABEL_STUDY}={ref.name},{selector}"):
                pods_by_trial.setdefault(pod["metadata"]["labels"].get(LABEL_TRIAL, ""), []).append(
                    pod
                )
            for job in need_pods:
                records.append(self._from_pods(job, pods_by_trial.get(job.trial, []), spec))
        return records, wake_in

    def _from_pods(self, job: JobState, pods: list[Obj], spec: ScalingStudySpec) -> TrialRecord:
        trial = job.as_trial
        assert trial is not None
        if job.phase == "succeeded":
            message = success_message(pods)
            try:
                if message is None:
                    raise ResultError("no pod of the Job reported a termination message")
                result = parse_result(message, spec.metric.name)
            except ResultError as exc:
                return TrialRecord.failed(trial, "BadResult", str(exc), job.duration)
            return TrialRecord.succeeded(trial, result, job.duration, "termination-message")
        reason, message = failure_reason(job, last_outcome(pods))
        return TrialRecord.failed(trial, reason, message, job.duration)

    def _maybe_fit(
        self, key: Key, spec: ScalingStudySpec, planned: list[Any], p: Pass, before: Obj
    ) -> tuple[Obj | None, str | None, float | None]:
        """Fit when new results arrived, at most every fit_interval seconds (always for the
        final fit). Returns the fit status to write, an error, and when to come back."""
        previous = before or None
        if not p.needs_fit:
            return previous, None, None
        final = p.finished and not p.failed_reason
        since = time.monotonic() - self.last_fit.get(key, -1e9)
        if not final and since < self.config.fit_interval:
            return previous, None, self.config.fit_interval - since
        names = {t.name for t in planned}
        relevant = [r for n, r in p.records.items() if n in names]
        started = time.monotonic()
        try:
            fit = run_fit(points_of(relevant), fit_options(spec))
        except FitError as exc:
            self.last_fit[key] = time.monotonic()
            return previous, str(exc), None
        finally:
            self.metrics.fit_seconds.observe(time.monotonic() - started)
        self.last_fit[key] = time.monotonic()
        n = sum(1 for r in relevant if r.status == "Succeeded")
        return fit_status(fit, final=final, n_results=n), None, None

    def _status(
        self,
        p: Pass,
        spec: ScalingStudySpec,
        generation: int,
        before: Obj,
        fit: Obj | None,
        fit_error: str | None,
    ) -> Obj:
        final_error = fit_error if p.finished else None
        fit_final = bool(fit and fit.get("final")) and p.finished
        if fit is not None and fit.get("final") and not p.finished:
            fit = {**fit, "final": False}
        if p.finished and not p.failed_reason and fit is None and not final_error:
            final_error = "fewer than 3 data sizes have a succeeded trial"
        phase, reason = phase_of(p, None, final_error, fit_final)
        order = {name: i for i, name in enumerate(p.records)}
        rows = sorted(
            p.records.values(), key=lambda r: (r.data_size, r.model_size, r.seed, order[r.trial])
        )
        done = p.counts["succeeded"] + p.counts["failed"]
        status: Obj = {
            "phase": phase,
            "observedGeneration": generation,
            "conditions": conditions_for(
                phase, reason, before.get("conditions") or [], generation, now_rfc3339(), None
            ),
            "trials": p.counts,
            "progress": f"{done}/{p.counts['total']}",
            "results": [r.to_json() for r in rows],
        }
        if fit is not None:
            status["fit"] = fit
        return status

    def _invalid(self, ref: StudyRef, generation: int, before: Obj, error: str) -> None:
        """A spec the CRD schema let through but the full validation rejects: say so in
        status and an Event, keep every result, touch nothing else."""
        if before.get("observedGeneration") == generation and before.get("phase") == "Failed":
            return
        status = dict(before)
        status.update(
            phase="Failed",
            observedGeneration=generation,
            conditions=conditions_for(
                "Failed", error, before.get("conditions") or [], generation, now_rfc3339(), error
            ),
        )
        self.kube.patch_study_status(ref.namespace, ref.name, status)
        self.kube.emit(ref, Event("Warning", "InvalidSpec", error), now_rfc3339())


def gpus_per_trial(spec: ScalingStudySpec) -> float:
    limits = spec.trainer.resources.limits
    raw = limits.get("nvidia.com/gpu", spec.trainer.resources.requests.get("nvidia.com/gpu", 0))
    try:
        return float(str(raw))
    except ValueError:
        return 0.0


def _owned_by(job: Obj, uid: str) -> bool:
    """Ignore Jobs of an earlier study of the same name that garbage collection has not
    removed yet."""
    return any(o.get("uid") == uid for o in job["metadata"].get("ownerReferences") or [])


def _changed(before: Obj, after: Obj) -> bool:
    def strip(status: Obj) -> Obj:
        conds = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or []
        ]
        return {**status, "conditions": conds}

    return strip({k: before.get(k) for k in after}) != strip(after)


def _failed_message(status: Obj) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return str(cond.get("message") or cond.get("reason"))
    return None


def _fit_event(fit: Obj) -> Event:
    lc = fit.get("learningCurve") or {}
    ms = fit.get("modelSize") or {}
    return Event(
        "Normal",
        "FitUpdated",
        f"{'final' if fit.get('final') else 'interim'} fit of {fit.get('basedOnResults')} results: "
        f"beta_g={_fmt(lc.get('beta'))} {lc.get('betaInterval')}, beta_p={_fmt(ms.get('beta'))}",
    )


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"
