"""The spend gauges the dashboard and the budget alert read (issue 40): the operator exports
the status' spend, its full grid's estimate and its budget in device-seconds, one series per
study labelled with the device the study counts, and no series where the status holds no
value (a 0 would read as a budget of nothing to the alert that compares spend with it)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.status import DesignStatus, ScalingStudyStatus


def design(**fields: Any) -> ScalingStudyStatus:
    base: dict[str, Any] = {
        "strategy": "grid",
        "trials_started": 2,
        "grid_trials": 6,
        "trials_skipped": 4,
        "gpu_seconds": 0.0,
        "device": "cpu",
        "device_seconds": 1800.0,
        "grid_device_seconds": 5400.0,
        "budget_device_seconds": 3600.0,
    }
    return ScalingStudyStatus(design=DesignStatus(**{**base, **fields}))


def sample(metrics: OperatorMetrics, name: str, device: str) -> float | None:
    labels = {"namespace": "ns", "study": "s", "device": device}
    return metrics.registry.get_sample_value(name, labels)


SPEND = "scalingstudy_design_device_seconds"
GRID = "scalingstudy_design_grid_device_seconds"
BUDGET = "scalingstudy_design_budget_device_seconds"


def test_spend_grid_and_budget_are_exported_by_device() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.observe_study("ns", "s", design())
    assert sample(metrics, SPEND, "cpu") == 1800.0
    assert sample(metrics, GRID, "cpu") == 5400.0
    assert sample(metrics, BUDGET, "cpu") == 3600.0
    assert [sample(metrics, name, "gpu") for name in (SPEND, GRID, BUDGET)] == [None] * 3


def test_a_spec_edit_moves_the_series_to_the_new_device_and_drops_a_removed_budget() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.observe_study("ns", "s", design())
    metrics.observe_study(
        "ns", "s", design(device="gpu", gpu_seconds=10.0, device_seconds=10.0,
                          budget_device_seconds=None, grid_device_seconds=None),
    )  # fmt: skip
    assert sample(metrics, SPEND, "gpu") == 10.0
    assert sample(metrics, SPEND, "cpu") is None
    # No budget and no estimate yet: no series at all, on either device.
    for name in (GRID, BUDGET):
        assert (sample(metrics, name, "gpu"), sample(metrics, name, "cpu")) == (None, None)


def test_a_deleted_study_leaves_no_spend_series() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.observe_study("ns", "s", design())
    metrics.forget_study("ns", "s")
    for name in (SPEND, GRID, BUDGET):
        assert sample(metrics, name, "cpu") is None
