"""What one pass writes to the cluster: the status (one writer), then the study's
ConfigMap, Jobs and Services created and deleted, Pushgateway groups of recorded trials
deleted, Events emitted; and the sweep of Pushgateway groups nothing will read (of studies
deleted while no operator ran, progress pushed after a trial was recorded)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalingstudy.cluster.blocked import CreateBlock, create_refused, name_taken
from scalingstudy.cluster.kube import ApiError, Kube
from scalingstudy.cluster.manifests import (
    JobSettings,
    StudyRef,
    config_map_manifest,
    config_map_name,
    config_map_owner,
    job_manifest,
    service_manifest,
)
from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.cluster.prometheus import Prometheus
from scalingstudy.cluster.reasons import Event, Refusal, Stop
from scalingstudy.cluster.reconcile import Pass
from scalingstudy.cluster.status_patch import merge_patch, status_changed
from scalingstudy.cluster.study_events import started_event
from scalingstudy.contract import PROGRESS_PUSH_JOB, PUSH_JOB
from scalingstudy.planning.cost import trial_devices
from scalingstudy.planning.plan import Trial
from scalingstudy.records import with_current_names
from scalingstudy.spec import ScalingStudySpec
from scalingstudy.status import ScalingStudyStatus

log = logging.getLogger("scalingstudy.operator")

#: The Pushgateway jobs the trainers push under: results and live progress.
PUSH_JOBS = (PUSH_JOB, PROGRESS_PUSH_JOB)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Configured:
    """Whether the study's ConfigMap (which every trial mounts) is in place; ``conflict``
    says why no trial can start while a ConfigMap not of a study holds its name,
    ``refused`` when the API server refused to create it (403)."""

    ready: bool
    conflict: str | None = None
    refused: CreateBlock | None = None


@dataclass(frozen=True)
class Acted:
    """What creating the pass's trials met: a Job the API server refused as invalid (the
    study is refused until its spec changes), or a block (a name taken by an object the
    study does not own, a 403) that is said in TrialsBlocked and tried again later."""

    rejected: Stop | None = None
    blocked: CreateBlock | None = None
    #: Trials whose Job name an object the study does not own holds (all of this pass's).
    taken: tuple[str, ...] = ()


class Actor:
    def __init__(
        self, kube: Kube, prometheus: Prometheus, metrics: OperatorMetrics, job: JobSettings
    ) -> None:
        self.kube, self.prometheus, self.metrics, self.job = kube, prometheus, metrics, job
        #: The uid of each study whose ConfigMap is known to exist.
        self.configured: dict[tuple[str, str], str] = {}

    def forget(self, namespace: str, name: str) -> None:
        self.configured.pop((namespace, name), None)

    def configure(self, ref: StudyRef, spec: ScalingStudySpec) -> Configured:
        """The study's ConfigMap, created when missing. Checked every pass until it is the
        study's, so a conflict clears itself when the foreign object goes."""
        key = (ref.namespace, ref.name)
        if self.configured.get(key) == ref.uid:
            return Configured(True)
        manifest = config_map_manifest(ref, spec)
        try:
            existing = self.kube.create_or_get_config_map(manifest)
        except ApiError as exc:
            if exc.status != 403:
                raise
            name = manifest["metadata"]["name"]
            return Configured(False, refused=create_refused("ConfigMap", name, exc.detail))
        whose = config_map_owner(existing, ref)
        if whose == "ours":
            self.configured[key] = ref.uid
            return Configured(True)
        if whose == "previous":
            log.info("%s/%s: waiting for the ConfigMap of a deleted study of the same name "
                     "to be garbage-collected", ref.namespace, ref.name)  # fmt: skip
            return Configured(False)
        return Configured(False, (
            f"ConfigMap {config_map_name(ref.name)} exists and is not this study's; the "
            "operator keeps each study's task and training settings there: rename the study "
            "or remove that ConfigMap"
        ))  # fmt: skip

    def act(
        self, ref: StudyRef, spec: ScalingStudySpec, p: Pass, events: Sequence[Event],
        create: Sequence[Trial], pruned: Sequence[str] = (),
    ) -> Acted:  # fmt: skip
        """After status is written: Pushgateway clean-up, deletions (``pruned``: Jobs of
        trials status now records as pruned, and of runs it counts as cancelled;
        background propagation, so their pods get SIGTERM and Kueue frees their quota),
        the Jobs of ``create``, Events. Says when
        the API server refused a Job as invalid or forbidden (nothing more is created
        then) or a Job name is held by a Job not the study's."""
        self.metrics.record_trials(ref.namespace, ref.name, p.new_records, trial_devices(spec))
        if p.new_records:
            recorded = {rec.trial for rec in p.new_records}
            # A recorded trial is not running: its last pushed evaluation leaves the
            # dashboard's panel of running trials too (Prometheus keeps the history).
            self.prometheus.delete_groups(ref.namespace, ref.name, recorded, PUSH_JOBS)
        for job_name in sorted({*p.delete, *pruned}):
            self.kube.delete_job(ref.namespace, job_name)
        if spec.trainer.nodes > 1:  # a trial's rendezvous Service outlives it for nothing
            for name in sorted({r.trial for r in p.new_records} | set(p.delete)):
                self.kube.delete_service(ref.namespace, name)
        created, acted = self._create(ref, spec, create)
        # TrialsStarted names the trials whose Jobs exist now.
        started = started_event(created)
        stamp = now_rfc3339()
        for event in [started, *events] if started else events:
            try:
                self.kube.emit(ref, event, stamp)
            except ApiError as exc:  # Events are a courtesy: a refused one stops nothing
                if exc.status not in (403, 422):
                    raise
                log.warning("%s/%s: Event %s refused: %s", ref.namespace, ref.name,
                            event.reason, exc.detail)  # fmt: skip
        return acted

    def _create(
        self, ref: StudyRef, spec: ScalingStudySpec, create: Sequence[Trial]
    ) -> tuple[list[Trial], Acted]:
        """The trials' Services and Jobs; the trials whose Jobs were made, and what
        stopped or blocked the rest."""
        created: list[Trial] = []
        blocked: CreateBlock | None = None
        taken: list[str] = []
        for trial in create:
            kind = "Job"
            try:
                if spec.trainer.nodes > 1:  # its pods resolve each other through it
                    kind = "Service"
                    self.kube.create_service(service_manifest(ref, trial))
                    kind = "Job"
                existing = self.kube.create_job(job_manifest(ref, spec, trial, self.job))
            except ApiError as exc:
                if exc.status in (400, 422):
                    return created, Acted(rejected=Stop(Refusal.JOB_REJECTED, (
                        f"the API server refused the Job of trial {trial.name}: {exc.detail}"
                    )), blocked=blocked)  # fmt: skip
                if exc.status != 403:
                    raise
                refused = create_refused(kind, trial.name, exc.detail)
                return created, Acted(blocked=refused, taken=tuple(taken))
            if existing is None:
                created.append(trial)
                continue
            whose = config_map_owner(existing, ref)  # the same rule for any owned object
            if whose == "foreign":
                taken.append(trial.name)
                blocked = blocked or name_taken(trial.name, existing)
            elif whose == "previous":
                log.info("%s/%s: the Job %s of a deleted study of the same name is not yet "
                         "garbage-collected", ref.namespace, ref.name, trial.name)  # fmt: skip
        return created, Acted(blocked=blocked, taken=tuple(taken))

    def write_status(
        self, ref: StudyRef, raw: Mapping[str, Any], after: ScalingStudyStatus, version: str
    ) -> str | None:
        """The one status writer: the whole status as meant, as a merge patch against the
        status read this pass (keys no longer held become nulls), skipped when nothing but
        condition timestamps would change; only onto the study (uid) as it was read
        (``version``). Returns the study's resourceVersion after it (``version`` when
        nothing was written), or None when the study changed or went since it was read:
        nothing of the pass may then be acted on."""
        written = after.to_json()
        if not status_changed(raw, written):
            return version
        patch = merge_patch(raw, written)
        return self.kube.patch_study_status(ref.namespace, ref.name, patch, ref.uid, version)

    def refusal_event(self, ref: StudyRef, refusal: Stop) -> None:
        self.kube.emit(ref, refusal.warning(), now_rfc3339())


def sweep_pushgateway(
    kube: Kube, prometheus: Prometheus, namespaces: Collection[str] | None
) -> int:
    """Pushgateway housekeeping in the served namespaces (None: all): the groups of
    studies that no longer exist (deleted while no operator ran), and the progress groups
    of trials their study has recorded (a pod may push its last evaluation after that:
    a pruned trial's trainer does as its Job is deleted). Returns how many went."""
    groups = [g for g in prometheus.push_groups() if g.get("job") in PUSH_JOBS]
    recorded: dict[tuple[str, str], frozenset[str] | None] = {}
    for namespace, name in sorted({(g.get("namespace", ""), g.get("study", "")) for g in groups}):
        if not (namespace and name) or (namespaces is not None and namespace not in namespaces):
            continue
        obj = kube.get_study(namespace, name)
        recorded[(namespace, name)] = None if obj is None else recorded_trials(name, obj)
    return prometheus.delete_each(stale_groups(groups, recorded))


def recorded_trials(name: str, obj: Mapping[str, Any]) -> frozenset[str]:
    """The trials a study's status records, by the names their Jobs and groups carry."""
    status = ScalingStudyStatus.lenient(obj.get("status") or {})
    return frozenset(with_current_names(name, status.results))


def stale_groups(
    groups: Sequence[Mapping[str, str]],
    recorded: Mapping[tuple[str, str], frozenset[str] | None],
) -> list[Mapping[str, str]]:
    """Of ``groups``, those of the studies in ``recorded`` that nothing will read: every
    group of a study that is gone (None), and the progress groups of recorded trials."""
    stale: list[Mapping[str, str]] = []
    for g in groups:
        key = (g.get("namespace", ""), g.get("study", ""))
        if key not in recorded:
            continue
        trials = recorded[key]
        if trials is None or (g.get("job") == PROGRESS_PUSH_JOB and g.get("trial") in trials):
            stale.append(g)
    return stale
