"""What one pass reads of a study besides the study itself: its Jobs, the results of its
finished Jobs (pods first, Prometheus to cross-check them: `collect.py` decides), and why
Jobs have no pods (`blocked.py` decides)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from scalingstudy.cluster import blocked
from scalingstudy.cluster.collect import Collected, CollectPolicy, Samples, collect, mismatch_events
from scalingstudy.cluster.kube import Kube
from scalingstudy.cluster.manifests import LABEL_STUDY, LABEL_TRIAL, Obj, StudyRef
from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.cluster.observe import (
    KUEUE_JOB_UID,
    Admitted,
    JobState,
    admitted_before,
    job_state,
)
from scalingstudy.cluster.prometheus import Prometheus, PrometheusUnavailableError
from scalingstudy.cluster.reasons import Event
from scalingstudy.spec import ScalingStudySpec

log = logging.getLogger("scalingstudy.operator")
#: Trials per pod list: a label selector of finished trials stays a short URL.
POD_SELECTOR_CHUNK = 50


class Gatherer:
    def __init__(
        self, kube: Kube, prometheus: Prometheus, metrics: OperatorMetrics,
        result_grace: float, blocked_after: float, pushgateway: bool,
    ) -> None:  # fmt: skip
        self.kube, self.prometheus, self.metrics = kube, prometheus, metrics
        self.result_grace, self.blocked_after = result_grace, blocked_after
        self.pushgateway = pushgateway

    def jobs(self, ref: StudyRef) -> list[JobState]:
        """The study's Jobs: those of an earlier study of the same name that garbage
        collection has not removed yet are not its."""
        listed = self.kube.list_jobs(ref.namespace, f"{LABEL_STUDY}={ref.name}")
        return [job_state(j) for j in listed if _owned_by(j, ref.uid)]

    def results(
        self, ref: StudyRef, spec: ScalingStudySpec, done: Sequence[JobState]
    ) -> tuple[Collected, list[Event]]:
        """Records of finished Jobs (`collect.collect`): their pods always, Prometheus's
        samples to cross-check them and for when no pod can tell."""
        if not done:
            return Collected((), (), None), []
        samples, reachable, error = _samples(self.prometheus, ref, done)
        # Only a succeeded Job waits for a scrape, and then Prometheus was asked.
        waits = bool(self.prometheus.url) and self.pushgateway
        policy = CollectPolicy(spec.metric.name, waits, self.result_grace, reachable,
                               self.prometheus.answering_since, error)  # fmt: skip
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

    def admitted_before(
        self, ref: StudyRef, spec: ScalingStudySpec, jobs: Sequence[JobState]
    ) -> dict[str, Admitted]:
        """What Kueue's Workloads of these Jobs say of the time each was admitted before
        a preemption (`observe.admitted_before`), by Job uid: nothing is asked of a study
        without a queue; {} where Kueue is absent or forbidden (said: the spend then
        misses that time)."""
        wanted = sorted({j.uid for j in jobs if j.uid}) if spec.queue_name else []
        out: dict[str, Admitted] = {}
        for i in range(0, len(wanted), POD_SELECTOR_CHUNK):
            chunk = ",".join(wanted[i : i + POD_SELECTOR_CHUNK])
            # An error the API server may not repeat fails the pass (retried: the Jobs
            # and their Workloads are still there); only an absent or forbidden Kueue
            # costs the time.
            listed = self.kube.list_workloads(ref.namespace, f"{KUEUE_JOB_UID} in ({chunk})")
            if listed is None:
                log.warning("%s/%s: Kueue Workloads cannot be read (Kueue is not installed, "
                            "or the operator may not list them): time admitted before a "
                            "preemption is not counted in the spend",
                            ref.namespace, ref.name)  # fmt: skip
                return out
            out |= admitted_before(listed)
        return out

    def blocked(self, ref: StudyRef, jobs: Sequence[JobState]) -> list[blocked.Blocked]:
        """Jobs without a pod past the grace period, with the Job controller's reason."""
        now = dt.datetime.now(dt.UTC)
        return [
            blocked.why(job, self.kube.list_events(
                ref.namespace, f"involvedObject.kind=Job,involvedObject.name={job.name}"))
            for job in blocked.candidates(jobs, now, self.blocked_after)
        ]  # fmt: skip


def _samples(
    prometheus: Prometheus, ref: StudyRef, done: Sequence[JobState]
) -> tuple[Samples, bool, str | None]:
    """Prometheus's samples of the study, whether it answered, and its error if not."""
    if not prometheus.url or not any(j.phase == "succeeded" for j in done):
        return {}, False, None
    try:
        return prometheus.study_results(ref.namespace, ref.name), True, None
    except PrometheusUnavailableError as exc:
        log.warning("%s/%s: %s; using termination messages", ref.namespace, ref.name, exc)
        return {}, False, str(exc)


def _owned_by(job: Obj, uid: str) -> bool:
    return any(o.get("uid") == uid for o in job["metadata"].get("ownerReferences") or [])
