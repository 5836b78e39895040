"""The status the operator writes (its schema is part of the CRD; dashboards rely on names)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Phase = Literal["Pending", "Running", "Fitting", "Succeeded", "Failed"]


def _open_objects() -> Any:
    """A list of objects whose keys the API server keeps as they are (fit report parts)."""
    return Field(
        default_factory=list,
        json_schema_extra={
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    )


def _open_object() -> Any:
    """An optional object whose keys the API server keeps as they are."""
    return Field(default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})


class _Status(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, use_attribute_docstrings=True
    )


class Condition(_Status):
    """A Kubernetes-style condition (Complete, Failed, Progressing, SpecValid)."""

    type: str
    """Condition type."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str | None = None
    """CamelCase reason for the last transition."""
    message: str | None = None
    """Human-readable details."""
    last_transition_time: str | None = None
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The spec generation the condition was computed from."""


class TrialCounts(_Status):
    """Trials by state."""

    total: int = 0
    """Trials in the plan."""
    pending: int = 0
    """Not started yet, or queued (suspended by Kueue)."""
    running: int = 0
    """Job active."""
    succeeded: int = 0
    """Finished with a recorded result."""
    failed: int = 0
    """Finished without a result."""


class ResultRow(_Status):
    """One finished trial."""

    trial: str
    """Trial (and Job) name."""
    data_size: int
    """Training-subset size."""
    model_size: int
    """Model-size knob."""
    seed: int
    """Initialisation seed."""
    status: Literal["Succeeded", "Failed"]
    """Outcome."""
    loss: float | None = None
    """The study's metric (validation loss) of a succeeded trial."""
    parameters: float | None = None
    """Parameter count of the trained model."""
    train_loss: float | None = None
    """Final training loss."""
    steps: int | None = None
    """Optimiser steps taken."""
    samples_seen: int | None = None
    """Training examples processed."""
    duration_seconds: float | None = None
    """Wall time of the trial."""
    reason: str | None = None
    """Why a trial failed (exit code, OOMKilled, DeadlineExceeded, ...)."""
    message: str | None = None
    """Tail of the failed trial's message."""
    source: str | None = None
    """Where the result was read: prometheus, termination-message or file."""


class LearningCurveStatus(_Status):
    """eps(m) = alpha * m**beta + gamma over the power-law region."""

    form: str | None = None
    """power-law or power-law-plus-constant."""
    alpha: float | None = None
    """Scale."""
    beta: float | None = None
    """Learning-curve exponent beta_g (negative)."""
    gamma: float | None = None
    """Irreducible error."""
    beta_interval: list[float] | None = None
    """Bootstrap confidence interval of beta."""
    r2_log: float | None = None
    """R^2 in log space."""
    power_law_range: list[float] | None = None
    """Data sizes of the power-law region used for the exponent."""


class ModelSizeStatus(_Status):
    """s(m) = alpha * m**beta: parameters of the best model per data size."""

    alpha: float | None = None
    """Scale."""
    beta: float | None = None
    """Model-size exponent beta_p."""
    beta_interval: list[float] | None = None
    """Confidence interval of beta_p (profile likelihood over the continuous optima)."""
    method: str | None = None
    """continuous optimum (censored fit), or best grid point when optima are too few."""
    grid_beta: float | None = None
    """beta_p through the best grid point per data size (the step-function estimate)."""
    estimates: list[dict[str, Any]] = _open_objects()
    """Best parameter count per data size between grid points; censored: above/below."""


class FitStatus(_Status):
    """The fitted laws; refitted as results arrive."""

    final: bool = False
    """True once every trial has finished."""
    based_on_results: int | None = None
    """How many succeeded trials the fit used."""
    learning_curve: LearningCurveStatus | None = None
    """Learning-curve fit."""
    model_size: ModelSizeStatus | None = None
    """Model-size fit."""
    predictions: list[dict[str, Any]] = _open_objects()
    """Loss predicted at larger data sizes: interval (backtest-calibrated prediction
    interval), distanceRatio, form, sigmaLog, parametricInterval, supported."""
    extrapolation: dict[str, Any] | None = _open_object()
    """How the prediction intervals were made: the forms' backtest errors, the error model."""
    data_for_target: dict[str, Any] | None = _open_object()
    """Data size needed for spec.fit.targetLoss."""
    joint: dict[str, Any] | None = _open_object()
    """Joint fit of loss in model size and data, when the grid allows."""
    warnings: list[str] = Field(default_factory=list)
    """Caveats of the fit."""


class ScalingStudyStatus(_Status):
    """Observed state of a study."""

    phase: Phase | None = None
    """Pending, Running, Fitting, Succeeded or Failed."""
    observed_generation: int | None = None
    """The spec generation this status reflects."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Kubernetes-style conditions."""
    trials: TrialCounts | None = None
    """Trials by state."""
    progress: str | None = None
    """Finished/total trials, e.g. 12/32."""
    results: list[ResultRow] = Field(default_factory=list)
    """One row per finished trial; kept across operator restarts and spec changes."""
    fit: FitStatus | None = None
    """Fitted scaling laws."""
