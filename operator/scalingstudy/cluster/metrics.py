"""The operator's own metrics (DESIGN §5) and its liveness endpoint."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import get_args

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from scalingstudy.fitting.report import LearningCurve, ModelSizeLaw
from scalingstudy.planning.cost import Devices
from scalingstudy.status import (
    CancelledRun,
    ScalingStudyStatus,
    StopReason,
    TrialCounts,
    TrialRecord,
)

STATES = ("pending", "queued", "running", "succeeded", "failed", "pruned")
DEVICES = ("gpu", "cpu")
STOP_REASONS: tuple[str, ...] = get_args(StopReason)
PHASES = ("Pending", "Running", "Fitting", "Succeeded", "Failed")


class Exponent:
    """A fitted exponent with the two ends of its interval, per study."""

    def __init__(self, name: str, what: str, registry: CollectorRegistry) -> None:
        labels = ["namespace", "study"]
        self.value = Gauge(f"scalingstudy_fit_{name}", f"Fitted {what}", labels, registry=registry)
        self.lower = Gauge(
            f"scalingstudy_fit_{name}_lower", f"Lower end of {name}'s interval", labels,
            registry=registry,
        )  # fmt: skip
        self.upper = Gauge(
            f"scalingstudy_fit_{name}_upper", f"Upper end of {name}'s interval", labels,
            registry=registry,
        )  # fmt: skip
        self.gauges = (self.value, self.lower, self.upper)

    def observe(
        self, namespace: str, study: str, part: LearningCurve | ModelSizeLaw | None
    ) -> None:
        ends = (part.beta_interval or [None, None]) if part is not None else [None, None]
        # An exponent or an interval end the data cannot give is no series at all, rather
        # than a stale value or a number standing in for "unbounded".
        for gauge, value in zip(
            self.gauges, (None if part is None else part.beta, *ends), strict=True
        ):
            if value is None:
                with contextlib.suppress(KeyError):
                    gauge.remove(namespace, study)
            else:
                gauge.labels(namespace, study).set(value)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._exported: dict[str, int] = {}
        r = self.registry
        study = ["namespace", "study"]
        self.trials = Gauge(
            "scalingstudy_trials", "Trials of a study by state", [*study, "state"], registry=r
        )
        self.phase = Gauge(
            "scalingstudy_study_phase",
            "1 for the study's current phase",
            [*study, "phase"],
            registry=r,
        )
        self.beta_g = Exponent("beta_g", "learning-curve exponent", r)
        self.beta_p = Exponent("beta_p", "model-size exponent", r)
        self.gamma = Gauge("scalingstudy_fit_gamma", "Fitted irreducible loss", study, registry=r)
        self.trial_seconds = Histogram(
            "scalingstudy_trial_duration_seconds",
            "Wall time of finished trials",
            [*study, "status"],
            buckets=(1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400),
            registry=r,
        )
        self.gpu_seconds = Counter(
            "scalingstudy_trial_gpu_seconds",
            "GPU time of finished trials (duration x nvidia.com/gpu limit); 0 for CPU trials",
            study,
            registry=r,
        )
        self.device_seconds = Counter(
            "scalingstudy_trial_device_seconds",
            "Device time of finished trials: duration x the GPUs of their pods, or their CPUs "
            "where they request no GPUs (device label)",
            [*study, "device"],
            registry=r,
        )
        self.reconciles = Counter(
            "scalingstudy_reconcile_total", "Reconcile passes", ["result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "scalingstudy_reconcile_duration_seconds", "Duration of a reconcile pass", registry=r
        )
        self.fit_seconds = Histogram(
            "scalingstudy_fit_duration_seconds", "Duration of one fit", registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        self.api_requests = Counter(
            "scalingstudy_api_requests_total",
            "Kubernetes API requests by verb",
            ["verb"],
            registry=r,
        )
        self.result_source = Counter(
            "scalingstudy_results_total", "Recorded trial results by where they came from",
            ["source"], registry=r,
        )  # fmt: skip
        self.trials_blocked = Gauge(
            "scalingstudy_trials_blocked", "Trials whose Job has had no pod for too long",
            study, registry=r,
        )  # fmt: skip
        self.result_mismatches = Counter(
            "scalingstudy_result_mismatches_total",
            "Results whose Prometheus value disagreed with the pod's termination message",
            study, registry=r,
        )  # fmt: skip
        self.design_gpu_seconds = Gauge(
            "scalingstudy_design_gpu_seconds", "GPU-seconds the study's finished trials used",
            study, registry=r,
        )  # fmt: skip
        self.design_device_seconds = Gauge(
            "scalingstudy_design_device_seconds",
            "Device-seconds the study's finished trials used (status.design.deviceSeconds; "
            "GPU or CPU, the device label)",
            [*study, "device"], registry=r,
        )  # fmt: skip
        self.design_grid_gpu_seconds = Gauge(
            "scalingstudy_design_grid_gpu_seconds",
            "Estimated GPU-seconds of the study's full grid (finished trials as measured)",
            study, registry=r,
        )  # fmt: skip
        self.design_grid_device_seconds = Gauge(
            "scalingstudy_design_grid_device_seconds",
            "Estimated device-seconds of the study's full grid (status.design."
            "gridDeviceSeconds: finished trials as measured, the others from the cost model)",
            [*study, "device"], registry=r,
        )  # fmt: skip
        self.design_budget_device_seconds = Gauge(
            "scalingstudy_design_budget_device_seconds",
            "The study's budget in device-seconds (status.design.budgetDeviceSeconds, from "
            "spec.design.budget); no series without a budget",
            [*study, "device"], registry=r,
        )  # fmt: skip
        self.design_stopped = Gauge(
            "scalingstudy_design_stopped", "1 for why the study starts no more trials",
            [*study, "reason"], registry=r,
        )  # fmt: skip
        self.last_pass = Gauge(
            "scalingstudy_last_reconcile_timestamp_seconds", "When the last pass ended", registry=r
        )

    def observe_study(self, namespace: str, study: str, status: ScalingStudyStatus) -> None:
        counts = status.trials or TrialCounts()
        for state in STATES:
            self.trials.labels(namespace, study, state).set(getattr(counts, state))
        for phase in PHASES:
            self.phase.labels(namespace, study, phase).set(1 if status.phase == phase else 0)
        self._observe_design(namespace, study, status)
        fit = status.fit
        if fit is None:
            return
        self.beta_g.observe(namespace, study, fit.learning_curve)
        self.beta_p.observe(namespace, study, fit.model_size)
        if fit.learning_curve is not None:
            self.gamma.labels(namespace, study).set(fit.learning_curve.gamma)

    def _observe_design(self, namespace: str, study: str, status: ScalingStudyStatus) -> None:
        design = status.design
        if design is None:
            return
        self.design_gpu_seconds.labels(namespace, study).set(design.gpu_seconds)
        by_device = (
            (self.design_device_seconds, design.device_seconds),
            (self.design_grid_device_seconds, design.grid_device_seconds),
            (self.design_budget_device_seconds, design.budget_device_seconds),
        )
        for gauge, value in by_device:
            _set_device_series(gauge, namespace, study, design.device, value)
        if design.grid_gpu_seconds is not None:
            self.design_grid_gpu_seconds.labels(namespace, study).set(design.grid_gpu_seconds)
        for reason in STOP_REASONS:
            stopped = 1 if design.stop_reason == reason else 0
            self.design_stopped.labels(namespace, study, reason).set(stopped)

    def record_trials(
        self, namespace: str, study: str, records: Iterable[TrialRecord], devices: Devices | float
    ) -> None:
        """Newly recorded trials: where their result came from, their time and device time.
        ``devices``: the trial's (cost.trial_devices); a bare number is its GPUs (the older
        call), which adds no device time for CPU trials since it cannot say their CPUs."""
        held = devices if isinstance(devices, Devices) else Devices("gpu", float(devices))
        for rec in records:
            self.result_source.labels(rec.source or "none").inc()
            if rec.duration_seconds is not None:
                self.trial_seconds.labels(namespace, study, rec.status).observe(
                    rec.duration_seconds
                )
            self._spent(namespace, study, held, rec.seconds_used)  # earlier attempts too

    def record_cancelled(
        self, namespace: str, study: str, runs: Iterable[CancelledRun], devices: Devices
    ) -> None:
        """Runs deleted before they ended (status.design.cancelled): device time spent."""
        for run in runs:
            self._spent(namespace, study, devices, run.seconds)

    def _spent(self, namespace: str, study: str, devices: Devices, seconds: float) -> None:
        """Wall ``seconds`` on ``devices``: device-seconds, and GPU-seconds on GPUs."""
        used = devices.count * seconds
        if not used:
            return
        if devices.kind == "gpu":
            self.gpu_seconds.labels(namespace, study).inc(used)
        self.device_seconds.labels(namespace, study, devices.kind).inc(used)

    def pass_done(self, seconds: float, requests: Mapping[str, int]) -> None:
        """A reconcile pass ended: its duration, and the API requests made since the last."""
        self.reconcile_seconds.observe(seconds)
        self.last_pass.set(time.time())
        for verb, count in list(requests.items()):
            delta = count - self._exported.get(verb, 0)
            if delta > 0:
                self.api_requests.labels(verb).inc(delta)
                self._exported[verb] = count

    def forget_study(self, namespace: str, study: str) -> None:
        per_study: list[tuple[Gauge, tuple[str, ...]]] = [
            (g, ())
            for g in (
                *self.beta_g.gauges,
                *self.beta_p.gauges,
                self.gamma,
                self.trials_blocked,
                self.design_gpu_seconds,
                self.design_grid_gpu_seconds,
            )
        ]
        per_study += [(self.design_stopped, (reason,)) for reason in STOP_REASONS]
        per_study += [
            (gauge, (device,))
            for gauge in (
                self.design_device_seconds,
                self.design_grid_device_seconds,
                self.design_budget_device_seconds,
            )
            for device in DEVICES
        ]
        per_study += [(self.trials, (state,)) for state in STATES]
        per_study += [(self.phase, (phase,)) for phase in PHASES]
        for gauge, extra in per_study:
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, study, *extra)


def _set_device_series(
    gauge: Gauge, namespace: str, study: str, device: str, value: float | None
) -> None:
    """One series per study, labelled with the device the study counts (a spec edit may
    change it: the other device's series goes); none where the status holds no value
    (no budget, no cost estimate yet), rather than a stale one or a 0 that an alert
    comparing spend with the budget would read as a budget of nothing."""
    for other in DEVICES:
        if other == device and value is not None:
            gauge.labels(namespace, study, other).set(value)
        else:
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, study, other)


def metrics_app(metrics: OperatorMetrics, problem: Callable[[], str | None]) -> web.Application:
    """/metrics, and /healthz that fails while ``problem()`` names one (passes keep
    failing); a blocked event loop cannot answer at all, which a probe counts as failed."""

    async def serve_metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        trouble = problem()
        if trouble:
            return web.Response(status=503, text=f"{trouble}\n")
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/healthz", healthz)
    return app
