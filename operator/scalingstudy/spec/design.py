"""How a study chooses its trials: the full grid, or adaptively (a window of model sizes
around the predicted best at each new data size, stopping once the answer is known or
the budget is spent)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from scalingstudy.spec.base import SpecModel, cel


class StopWhen(SpecModel):
    """When an adaptive study has learnt enough: every criterion given must hold."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.betaIntervalWidth) || has(self.predictionRelativeWidth)",
                    "stopWhen needs betaIntervalWidth, predictionRelativeWidth or both",
                )
            ]
        }
    )

    beta_interval_width: Annotated[float, Field(gt=0, le=10)] | None = None
    """Stop when the confidence interval of beta_g is at most this wide."""
    prediction_relative_width: Annotated[float, Field(gt=0, le=100)] | None = None
    """Stop when the prediction interval at the first fit.predictAt (default 10x the
    largest data size) is at most this wide relative to the predicted loss."""
    min_data_sizes: Annotated[int, Field(ge=3, le=64)] = 4
    """Never stop before this many data sizes are finished."""

    @model_validator(mode="after")
    def _some(self) -> StopWhen:
        if self.beta_interval_width is None and self.prediction_relative_width is None:
            raise ValueError("stopWhen needs betaIntervalWidth, predictionRelativeWidth or both")
        return self


class Budget(SpecModel):
    """A hard cap on what a study may spend."""

    gpu_hours: Annotated[float, Field(gt=0, le=1e7)]
    """No trial starts whose expected cost would take the study's GPU-hours (finished
    trials' measured durations times their GPUs, plus the expected cost of running ones)
    above this. A trial without GPUs counts as one device."""


class DesignSpec(SpecModel):
    """Which trials a study trains."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.strategy == 'adaptive' || !has(self.stopWhen)",
                    "stopWhen needs strategy: adaptive (a grid trains every trial)",
                ),
                cel(
                    "self.strategy == 'adaptive' || !has(self.extendModelSizes) || "
                    "!self.extendModelSizes",
                    "extendModelSizes needs strategy: adaptive",
                ),
                cel(
                    "has(self.maxModelSize) == (has(self.extendModelSizes) && "
                    "self.extendModelSizes)",
                    "extendModelSizes: true needs maxModelSize (and maxModelSize needs it)",
                ),
            ]
        }
    )

    strategy: Literal["grid", "adaptive"] = "grid"
    """grid: every model size at every data size. adaptive: every model size at the first
    fullGridDataSizes data sizes, then only a window around the predicted best."""
    model_size_window: Annotated[int, Field(ge=2, le=64)] = 3
    """Model sizes trained at each adaptive data size (at least 2, to bracket the best)."""
    full_grid_data_sizes: Annotated[int, Field(ge=3, le=64)] = 3
    """Data sizes, from the smallest, trained with every model size before adapting."""
    extend_model_sizes: bool = False
    """Allow model sizes above the listed ones (following the grid's factor) when the best
    is at the largest, up to maxModelSize."""
    max_model_size: Annotated[int, Field(ge=1)] | None = None
    """Largest model size an extension may reach."""
    stop_when: StopWhen | None = None
    """Stop early once the fit is precise enough (adaptive only)."""
    budget: Budget | None = None
    """Hard cap on GPU-hours (either strategy)."""

    @model_validator(mode="after")
    def _consistent(self) -> DesignSpec:
        if self.strategy == "grid" and self.stop_when is not None:
            raise ValueError("stopWhen needs strategy: adaptive (a grid trains every trial)")
        if self.strategy == "grid" and self.extend_model_sizes:
            raise ValueError("extendModelSizes needs strategy: adaptive")
        if (self.max_model_size is not None) != self.extend_model_sizes:
            raise ValueError(
                "extendModelSizes: true needs maxModelSize (and maxModelSize needs it)"
            )
        return self

    @property
    def adaptive(self) -> bool:
        return self.strategy == "adaptive"
