"""Training progress on /metrics while a trial runs, for a PodMonitor to scrape.

The gauges carry the names and labels of the final trial gauges (DESIGN §5), so a
dashboard shows a running trial and a finished one the same way; throughput is extra.
A port that cannot be bound (taken) costs the progress view, never the trial.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from scalingstudy import contract
from scalingstudy_sdk import contract as sdk_contract
from scalingstudy_sdk.progress import StepCurve

LABELS = {
    "namespace": contract.ENV_NAMESPACE,
    "study": contract.ENV_STUDY,
    "trial": contract.ENV_TRIAL,
    "data_size": contract.ENV_DATA_SIZE,
    "model_size": contract.ENV_MODEL_SIZE,
    "seed": contract.ENV_SEED,
}


class Progress:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.registry = CollectorRegistry()
        self.labels = {name: env.get(var, "") for name, var in LABELS.items()}
        names = list(self.labels)

        def gauge(key: str, text: str) -> Gauge:
            metric = contract.TRIAL_GAUGES.get(key, f"scalingstudy_trial_{key}")
            return Gauge(metric, text, names, registry=self.registry)

        self.step = gauge("steps", "Optimiser steps so far")
        self.samples = gauge("samples_seen", "Training examples processed so far")
        self.train_loss = gauge("train_loss", "Mean training loss since the last evaluation")
        self.validation_loss = gauge("validation_loss", "Last validation loss")
        self.throughput = gauge(
            "samples_per_second", "Training throughput since the last evaluation"
        )
        self.curve = Gauge(sdk_contract.CURVE_GAUGE, "Validation loss at each step (thinned)",
                           [*names, "step"], registry=self.registry)  # fmt: skip
        self.steps = StepCurve()
        self.shown: set[int] = set()
        self.started = time.monotonic()

    def serve(self, port: int) -> bool:
        try:
            start_http_server(port, registry=self.registry)
        except OSError:
            return False
        return True

    def on_event(self, event: str, fields: Mapping[str, Any]) -> None:
        if event == "start":
            self.started = time.monotonic()
        if event != "eval":
            return
        values = {
            self.step: fields.get("step"),
            self.samples: fields.get("samples_seen"),
            self.train_loss: fields.get("train_loss"),
            self.validation_loss: fields.get("validation_loss"),
        }
        for gauge, value in values.items():
            if isinstance(value, int | float):
                gauge.labels(**self.labels).set(float(value))
        self._show_curve(fields)
        rate = fields.get("samples_per_second")
        if not isinstance(rate, int | float):  # a trainer that logs no rate: the mean so far
            seen = fields.get("samples_seen")
            elapsed = time.monotonic() - self.started
            rate = seen / elapsed if isinstance(seen, int | float) and elapsed > 0 else None
        if rate is not None:
            self.throughput.labels(**self.labels).set(float(rate))

    def _show_curve(self, fields: Mapping[str, Any]) -> None:
        """The curve gauge holds the steps `StepCurve` keeps, as the push does."""
        self.steps.add(fields)
        points = dict(self.steps.points())
        for step in self.shown - set(points):
            self.curve.remove(*self.labels.values(), str(step))
        for step, loss in points.items():
            self.curve.labels(**self.labels, step=str(step)).set(loss)
        self.shown = set(points)
