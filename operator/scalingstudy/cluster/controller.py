"""The operator's shell for one pass: gather a study's state, call the pure pass, apply
its actions. Every decision is made in `reconcile.py` and `collect.py`; this module reads,
fits and writes. When passes run is `workers.py`'s business.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scalingstudy.admission import AdmissionRules, violations
from scalingstudy.cluster import blocked
from scalingstudy.cluster.collect import Collected, CollectPolicy, Samples, collect, mismatch_events
from scalingstudy.cluster.fitproc import run_fit
from scalingstudy.cluster.kube import ApiError, Kube
from scalingstudy.cluster.manifests import (
    LABEL_STUDY,
    LABEL_TRIAL,
    JobSettings,
    Obj,
    StudyRef,
    config_map_manifest,
    config_map_name,
    config_map_owner,
    job_manifest,
    service_manifest,
)
from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.cluster.observe import JobState, job_state
from scalingstudy.cluster.prometheus import Prometheus, PrometheusUnavailableError
from scalingstudy.cluster.reconcile import (
    Event,
    Pass,
    active_trials,
    build_status,
    decide,
    design_events,
    fit_due,
    invalid_status,
    merged,
    refused,
    started_event,
    status_events,
    to_collect,
    within_limit,
)
from scalingstudy.cluster.status_patch import merge_patch, status_changed
from scalingstudy.cluster.workers import Key, Wake
from scalingstudy.contract import PUSH_JOB
from scalingstudy.cost import gpus_per_trial
from scalingstudy.design import Design, design
from scalingstudy.fitting import FitError
from scalingstudy.results import fit_options, points_of, stage_fit
from scalingstudy.spec import ScalingStudySpec, SpecError, parse_spec
from scalingstudy.status import FitStatus, ScalingStudyStatus, TrialRecord

log = logging.getLogger("scalingstudy.operator")
#: Trials per pod list: a label selector of finished trials stays a short URL.
POD_SELECTOR_CHUNK = 50


@dataclass(frozen=True)
class ControllerConfig:
    job: JobSettings = field(default_factory=JobSettings)
    resync_seconds: float = 30.0
    batch_window: float = 0.5
    fit_interval: float = 10.0
    #: How long a finished trial without a termination message waits for Prometheus to
    #: scrape its pushed result before it is recorded as failed (a few scrape intervals).
    result_grace: float = 15.0
    #: How often Pushgateway groups of deleted studies are looked for.
    sweep_seconds: float = 300.0
    #: How long a Job may have no pod before the study says its trials are blocked.
    blocked_after: float = 60.0
    #: What a study may ask of the cluster (the admission policy's rules, checked again).
    admission: AdmissionRules = field(default_factory=AdmissionRules)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sooner(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


class Controller:
    def __init__(
        self, kube: Kube, prometheus: Prometheus, metrics: OperatorMetrics, config: ControllerConfig
    ) -> None:
        self.kube = kube
        self.prometheus = prometheus
        self.metrics = metrics
        self.config = config
        self.last_fit: dict[Key, float] = {}
        #: The uid of each study whose ConfigMap is known to exist.
        self.configured: dict[Key, str] = {}

    def forget(self, namespace: str, name: str) -> None:
        """The study is gone: drop what this process remembers of it."""
        self.last_fit.pop((namespace, name), None)
        self.metrics.forget_study(namespace, name)
        self.configured.pop((namespace, name), None)

    # -- one pass (blocking, in a thread) ------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> Wake:
        obj = self.kube.get_study(namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return Wake(False)
        meta, raw_status = obj["metadata"], obj.get("status") or {}
        ref, generation = StudyRef(name, namespace, meta["uid"]), int(meta.get("generation", 0))
        before = ScalingStudyStatus.lenient(raw_status)
        try:
            spec = parse_spec(obj.get("spec"))
        except SpecError as exc:
            self._refuse(ref, generation, before, "InvalidSpec", str(exc), raw=raw_status)
            return Wake(True)
        forbidden = violations(spec, namespace, self.config.admission)
        if forbidden:
            self._refuse(ref, generation, before, "Forbidden", "; ".join(forbidden), raw=raw_status)
            return Wake(True)
        if refused(before, generation):
            return Wake(True)
        recorded = {r.trial: r for r in before.results}
        jobs = [job_state(j) for j in self.kube.list_jobs(namespace, f"{LABEL_STUDY}={name}")
                if _owned_by(j, ref.uid)]  # fmt: skip
        found, found_events = self._collect(ref, spec, to_collect(jobs, recorded))
        chosen = self._design(ref, spec, before, recorded, found.records, jobs)
        p = decide(chosen.plan, jobs, recorded, found.records, parallelism=spec.parallelism,
                   max_failed=spec.max_failed_trials, fit=before.fit,
                   more=chosen.more, queued_on_create=spec.queue_name is not None)  # fmt: skip
        fit, fit_error, fit_wake = self._maybe_fit((namespace, name), spec, p)
        stuck = self._blocked(ref, jobs)
        now = now_rfc3339()
        held = blocked.condition(stuck, before.conditions, generation, now)
        built = build_status(p, generation, before, fit or before.fit, fit_error, now, [held],
                             chosen.started(p.create))  # fmt: skip
        after = within_limit(built, generation, now)
        # Results reach status before anything else happens: a crash after this line
        # loses nothing, and one before it only repeats the collection.
        self._write_status(ref, raw_status, after)
        events = found_events + status_events(p, before, after, fitted=fit is not None)
        events += design_events(before.design, after.design, spec.model_sizes.sizes()[-1])
        events += [e for e in [blocked.became_blocked(before.conditions, held)] if e]
        self.metrics.trials_blocked.labels(namespace, name).set(len(stuck))
        # A status that says Failed (the size guard) starts nothing more.
        rejected = self._act(ref, spec, p, events, create=after.phase != "Failed")
        if rejected is not None:
            self._refuse(ref, generation, after, *rejected, raw=after.to_json())
        self.metrics.observe_study(namespace, name, after)
        return Wake(True, _sooner(found.wake_in, fit_wake))

    def _design(
        self,
        ref: StudyRef,
        spec: ScalingStudySpec,
        before: ScalingStudyStatus,
        recorded: dict[str, TrialRecord],
        found: Sequence[TrialRecord],
        jobs: Sequence[JobState],
    ) -> Design:
        """The design's decision, after the fits it asks for (in the fit child process;
        kept in status.design, so each is made once)."""
        records, _ = merged(recorded, found)
        active = active_trials(jobs, records)
        fits = {f.data_size: f for f in (before.design.stage_fits if before.design else [])}
        # Each fit through a data size is made at most once per pass (a bound, not a
        # retry: the design asks again only for a fit made of other results).
        for _ in range(len(spec.data_sizes.sizes()) + 1):
            chosen = design(ref.name, spec, records, active, fits)
            if chosen.fit_needed is None:
                break
            fits[chosen.fit_needed] = stage_fit(chosen.prefix, spec, chosen.fit_needed, run_fit)
        return chosen

    def _write_status(
        self, ref: StudyRef, raw: Mapping[str, Any], after: ScalingStudyStatus
    ) -> None:
        """The one status writer: the whole status as meant, as a merge patch against the
        status read this pass (keys no longer held become nulls), skipped when nothing but
        condition timestamps would change."""
        written = after.to_json()
        if status_changed(raw, written):
            self.kube.patch_study_status(ref.namespace, ref.name, merge_patch(raw, written))

    def _refuse(
        self,
        ref: StudyRef,
        generation: int,
        before: ScalingStudyStatus,
        why: str,
        error: str,
        *,
        raw: Mapping[str, Any],
    ) -> None:
        """A spec the schema let through but the operator will not run: say so in status
        and a Warning Event, keep every result, touch nothing else."""
        invalid = invalid_status(before, generation, error, now_rfc3339())
        if invalid is not None:
            self._write_status(ref, raw, invalid)
            self.kube.emit(ref, Event("Warning", why, error), now_rfc3339())

    def _act(
        self,
        ref: StudyRef,
        spec: ScalingStudySpec,
        p: Pass,
        events: list[Event],
        *,
        create: bool = True,
    ) -> tuple[str, str] | None:
        """After status is written: Pushgateway clean-up, Jobs, Events. Returns (reason,
        message) when the study cannot run as it is: the API server refused a trial's Job
        as invalid, or its ConfigMap's name is taken (nothing more is created then)."""
        self.metrics.record_trials(ref.namespace, ref.name, p.new_records, gpus_per_trial(spec))
        if p.new_records:
            recorded = {rec.trial for rec in p.new_records}
            self.prometheus.delete_groups(ref.namespace, ref.name, recorded)
        for job_name in p.delete:
            self.kube.delete_job(ref.namespace, job_name)
        if spec.trainer.nodes > 1:  # a trial's rendezvous Service outlives it for nothing
            for name in sorted({r.trial for r in p.new_records} | set(p.delete)):
                self.kube.delete_service(ref.namespace, name)
        rejected: tuple[str, str] | None = None
        to_create = p.create if create else ()
        if to_create:
            configured, conflict = self._configure(ref, spec)
            to_create = to_create if configured else ()
            rejected = None if conflict is None else ("ConfigMapConflict", conflict)
        created = []
        for trial in to_create:
            try:
                if spec.trainer.nodes > 1:  # its pods resolve each other through it
                    self.kube.create_service(service_manifest(ref, trial))
                self.kube.create_job(job_manifest(ref, spec, trial, self.config.job))
            except ApiError as exc:
                if exc.status not in (400, 422):
                    raise
                rejected = (
                    "JobRejected",
                    f"the API server refused the Job of trial {trial.name}: {exc.detail}",
                )
                break
            created.append(trial)
        # TrialsStarted names the trials whose Jobs exist now, not the pass's plan.
        events = [e for e in events if e.reason != "TrialsStarted"]
        started = started_event(created)
        events = [started, *events] if started else events
        stamp = now_rfc3339()
        for event in events:
            self.kube.emit(ref, event, stamp)
        return rejected

    def _configure(self, ref: StudyRef, spec: ScalingStudySpec) -> tuple[bool, str | None]:
        """Whether the study's ConfigMap (which every trial mounts) is in place, creating it
        when missing; and why the study cannot run when a ConfigMap not of a study has
        its name."""
        key = (ref.namespace, ref.name)
        if self.configured.get(key) == ref.uid:
            return True, None
        existing = self.kube.create_or_get_config_map(config_map_manifest(ref, spec))
        whose = config_map_owner(existing, ref)
        if whose == "ours":
            self.configured[key] = ref.uid
            return True, None
        if whose == "previous":
            log.info("%s/%s: waiting for the ConfigMap of a deleted study of the same name "
                     "to be garbage-collected", ref.namespace, ref.name)  # fmt: skip
            return False, None
        return False, (
            f"ConfigMap {config_map_name(ref.name)} exists and is not this study's; the "
            "operator keeps each study's task and training settings there: rename the study "
            "or remove that ConfigMap"
        )

    def _collect(
        self, ref: StudyRef, spec: ScalingStudySpec, done: list[JobState]
    ) -> tuple[Collected, list[Event]]:
        """Records of finished Jobs (`collect.collect`): their pods always, Prometheus's
        samples to cross-check them and for when no pod can tell."""
        if not done:
            return Collected((), (), None), []
        samples, reachable = _samples(self.prometheus, ref, done)
        waits = bool(reachable and self.config.job.pushgateway_url)
        policy = CollectPolicy(spec.metric.name, waits, self.config.result_grace)
        pods: dict[str, list[Obj]] = {}
        names = sorted(j.trial for j in done)
        for i in range(0, len(names), POD_SELECTOR_CHUNK):
            chunk = ",".join(names[i : i + POD_SELECTOR_CHUNK])
            selector = f"{LABEL_STUDY}={ref.name},{LABEL_TRIAL} in ({chunk})"
            for pod in self.kube.list_pods(ref.namespace, selector):
                pods.setdefault(pod["metadata"]["labels"].get(LABEL_TRIAL, ""), []).append(pod)
        found = collect(done, pods, samples, dt.datetime.now(dt.UTC), policy)
        self.metrics.result_mismatches.labels(ref.namespace, ref.name).inc(len(found.mismatches))
        return found, mismatch_events(found.mismatches, spec.metric.name)

    def _blocked(self, ref: StudyRef, jobs: Sequence[JobState]) -> list[blocked.Blocked]:
        """Jobs without a pod past the grace period, with the Job controller's reason."""
        now = dt.datetime.now(dt.UTC)
        return [
            blocked.why(job, self.kube.list_events(
                ref.namespace, f"involvedObject.kind=Job,involvedObject.name={job.name}"))
            for job in blocked.candidates(jobs, now, self.config.blocked_after)
        ]  # fmt: skip

    def _maybe_fit(
        self, key: Key, spec: ScalingStudySpec, p: Pass
    ) -> tuple[FitStatus | None, str | None, float | None]:
        """The new fit (None: none ran), its error, and when to come back for it."""
        due, wake_in = fit_due(p, time.monotonic() - self.last_fit.get(key, -1e9),
                               self.config.fit_interval)  # fmt: skip
        if not due:
            return None, None, wake_in
        started = time.monotonic()
        try:
            report = run_fit(points_of(p.relevant()), fit_options(spec))
        except FitError as exc:
            return None, str(exc), None
        finally:
            self.last_fit[key] = time.monotonic()
            self.metrics.fit_seconds.observe(self.last_fit[key] - started)
        return FitStatus.of(report, final=p.final, based_on_results=p.succeeded), None, None


def sweep_pushgateway(
    kube: Kube, prometheus: Prometheus, namespaces: Collection[str] | None
) -> int:
    """Delete the Pushgateway groups of studies that no longer exist (deleted while no
    operator ran) in the served namespaces (None: all). Returns how many went."""
    groups = [g for g in prometheus.push_groups() if g.get("job") == PUSH_JOB]
    studies = {(g.get("namespace", ""), g.get("study", "")) for g in groups}
    deleted = 0
    for namespace, name in sorted(studies):
        if namespaces is not None and namespace not in namespaces:
            continue
        if namespace and name and kube.get_study(namespace, name) is None:
            deleted += prometheus.delete_groups(namespace, name)
    return deleted


def _samples(
    prometheus: Prometheus, ref: StudyRef, done: Sequence[JobState]
) -> tuple[Samples, bool]:
    """Prometheus's samples of the study, and whether it answered."""
    if not prometheus.url or not any(j.phase == "succeeded" for j in done):
        return {}, False
    try:
        return prometheus.study_results(ref.namespace, ref.name), True
    except PrometheusUnavailableError as exc:
        log.warning("%s/%s: %s; using termination messages", ref.namespace, ref.name, exc)
        return {}, False


def _owned_by(job: Obj, uid: str) -> bool:
    """Ignore Jobs of an earlier study of the same name that garbage collection has not
    removed yet."""
    return any(o.get("uid") == uid for o in job["metadata"].get("ownerReferences") or [])
