"""How a study chooses its trials: the full grid, or adaptively (a window of model sizes
around the predicted best at each new data size, stopping once the answer is known or
the budget is spent)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from scalingstudy.spec.base import SpecModel, cel
from scalingstudy.spec.grid import geometric, reaches_half, too_many_rule
from scalingstudy.spec.pruning import PruningSpec as PruningSpec  # re-exported: design.pruning

#: Compute budgets of one IsoFLOP study.
MAX_BUDGETS = 16
_SHARE = "computeShare needs strategy: adaptive"
#: An adaptive study spends at most this share of the full grid's compute by default:
#: where the best model grows into the grid's most expensive corner, the largest data
#: sizes are predicted instead of trained (benchmarks/adaptive.py).
DEFAULT_COMPUTE_SHARE = 0.4

_NEEDS_CRITERION = (
    "stopWhen needs one or more of betaIntervalWidth, predictionRelativeWidth and "
    "largestDataSizeRelativeWidth"
)


class StopWhen(SpecModel):
    """When an adaptive study has learnt enough: every criterion given must hold."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.betaIntervalWidth) || has(self.predictionRelativeWidth) || "
                    "has(self.largestDataSizeRelativeWidth)",
                    _NEEDS_CRITERION,
                )
            ]
        }
    )

    beta_interval_width: Annotated[float, Field(gt=0, le=10)] | None = None
    """Stop when the confidence interval of beta_g is at most this wide."""
    prediction_relative_width: Annotated[float, Field(gt=0, le=100)] | None = None
    """Stop when the prediction interval at the first fit.predictAt (default 10x the
    largest data size) is at most this wide relative to the predicted loss."""
    largest_data_size_relative_width: Annotated[float, Field(gt=0, le=100)] | None = None
    """Stop, predicting the loss at the data sizes not trained instead of training them,
    when the prediction interval at the largest listed data size is at most this wide
    relative to the predicted loss."""
    min_data_sizes: Annotated[int, Field(ge=3, le=64)] = 4
    """Never stop before this many data sizes are finished."""

    @model_validator(mode="after")
    def _some(self) -> StopWhen:
        if (
            self.beta_interval_width is None
            and self.prediction_relative_width is None
            and self.largest_data_size_relative_width is None
        ):
            raise ValueError(_NEEDS_CRITERION)
        return self


_ONE_BUDGET = "give deviceHours, or gpuHours (its older name), not both"


class Budget(SpecModel):
    """A hard cap on what a study may spend, in hours of the device its trials request:
    GPU-hours when the trainer's pods request GPUs (nvidia.com/gpu), else CPU-hours (the
    cpu each pod requests, else its limit, else 1 per pod)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.deviceHours) != has(self.gpuHours)", _ONE_BUDGET)
            ]
        }
    )

    device_hours: Annotated[float, Field(gt=0, le=1e7)] | None = None
    """No trial starts whose expected cost would take the study's device-hours (finished
    trials' measured durations times the devices of all their pods, plus the expected
    cost of running ones) above this. GPU-hours for a study whose trials request GPUs,
    else CPU-hours."""
    gpu_hours: Annotated[float, Field(gt=0, le=1e7)] | None = None
    """The older name of deviceHours, still accepted and meaning the same: on a study
    whose trials request no GPUs it caps CPU-hours."""

    @model_validator(mode="after")
    def _one(self) -> Budget:
        if (self.device_hours is None) == (self.gpu_hours is None):
            raise ValueError(_ONE_BUDGET)
        return self

    def hours(self) -> float:
        """The cap, whichever name gave it."""
        return self.device_hours if self.device_hours is not None else self.gpu_hours or 0.0


#: Budgets whose trials' compute lies within this many decades of each other are one
#: budget (trials of one IsoFLOP budget differ by the rounding of their data sizes;
#: measured compute of other people's runs scatters a little more). The fit groups by it
#: (`fitting.compute_optimal`), and a plan whose budgets it would merge is refused.
BUDGET_TOLERANCE_DECADES = 0.08
#: Neighbouring listed budgets at least this ratio apart: 0.1 decades, past the fit's
#: tolerance with room for the rounding of D.
BUDGET_SEPARATION = 1.25
_BUDGET_SPAN = (
    f"a range's max must be at least {BUDGET_SEPARATION} times its min: two budgets closer "
    "than that are one to the fit"
)
#: The smallest factor of a budget range: its last step, stretched or shortened to end at
#: max, is at least sqrt(factor) >= BUDGET_SEPARATION.
MIN_BUDGET_FACTOR = 1.6
_BUDGET_FACTOR = (
    f"a range's factor must be at least {MIN_BUDGET_FACTOR}: closer budgets are one budget "
    "to the fit"
)
_BUDGET_GAP = (
    f"listed budgets must lie a factor of at least {BUDGET_SEPARATION} apart: closer ones "
    "are one budget to the fit"
)
_BUDGET_COUNT = f"a range gives at most {MAX_BUDGETS} budgets (raise factor)"


class ComputeBudgets(SpecModel):
    """FLOPs per trial of an IsoFLOP study: a geometric range or a list."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.values) != (has(self.min) || has(self.max))",
                    "give either values, or min and max (with an optional factor), not both",
                ),
                cel(
                    "has(self.values) || (has(self.min) && has(self.max) && self.min < self.max)",
                    "a range needs min < max",
                ),
                cel(
                    f"has(self.values) || !has(self.min) || !has(self.max) || "
                    f"self.max >= self.min * {BUDGET_SEPARATION}",
                    _BUDGET_SPAN,
                ),
                cel(f"has(self.values) || self.factor >= {MIN_BUDGET_FACTOR}", _BUDGET_FACTOR),
                cel(
                    "!has(self.min) || !has(self.max) || !("
                    + too_many_rule("self.min", "self.max", "self.factor", MAX_BUDGETS)
                    + ")",
                    _BUDGET_COUNT,
                ),
                cel(
                    "!has(self.values) || self.values.all(x, self.values.all(y, x == y || "
                    f"x >= y * {BUDGET_SEPARATION} || y >= x * {BUDGET_SEPARATION}))",
                    _BUDGET_GAP,
                ),
            ]
        }
    )

    min: Annotated[float, Field(gt=0)] | None = None
    """Smallest budget of a geometric range."""
    max: Annotated[float, Field(gt=0)] | None = None
    """Largest budget of a geometric range (always trained: the last step is stretched
    or shortened to end there, as a size range's)."""
    factor: Annotated[float, Field(gt=1, le=1e6)] = 10.0**0.5
    """Ratio between neighbouring budgets (default sqrt(10): two per decade; at least
    1.6, so that no two budgets are one to the fit)."""
    values: list[Annotated[float, Field(gt=0)]] | None = Field(
        default=None, min_length=1, max_length=MAX_BUDGETS
    )
    """Explicit budgets, instead of a range (neighbours a factor of 1.25 or more apart)."""

    @model_validator(mode="after")
    def _one_form(self) -> ComputeBudgets:
        if (self.values is not None) == (self.min is not None or self.max is not None):
            raise ValueError(
                "give either values, or min and max (with an optional factor), not both"
            )
        if self.values is not None:
            values = self.values
            if not all(x == y or x >= y * BUDGET_SEPARATION or y >= x * BUDGET_SEPARATION
                       for x in values for y in values):  # fmt: skip
                raise ValueError(f"{_BUDGET_GAP} (got {sorted(set(values))})")
            return self
        if self.min is None or self.max is None or self.min >= self.max:
            raise ValueError(f"a range needs min < max (got min={self.min}, max={self.max})")
        if self.max < self.min * BUDGET_SEPARATION:
            raise ValueError(f"{_BUDGET_SPAN} (got min={self.min:.4g}, max={self.max:.4g})")
        if self.factor < MIN_BUDGET_FACTOR:
            made = ", ".join(f"{c:.4g}" for c in geometric(self.min, self.max, self.factor,
                                                            MAX_BUDGETS))  # fmt: skip
            raise ValueError(f"{_BUDGET_FACTOR} (factor {self.factor} makes {made})")
        if reaches_half(self.min, self.max, self.factor, MAX_BUDGETS - 1):
            raise ValueError(f"{_BUDGET_COUNT}: min={self.min:.4g}, max={self.max:.4g}, "
                             f"factor={self.factor} gives more")  # fmt: skip
        return self

    def sizes(self) -> list[float]:
        """The budgets in increasing order (a range ends at max exactly, with no sliver
        of a step before it)."""
        if self.values is not None:
            return sorted(set(self.values))
        assert self.min is not None and self.max is not None
        return geometric(self.min, self.max, self.factor, MAX_BUDGETS)


_ISOFLOP_PRUNING = (
    "pruning needs strategy grid or adaptive: an IsoFLOP study's trials of one data size "
    "belong to different compute budgets and do not compete"
)


class DesignSpec(SpecModel):
    """Which trials a study trains."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.strategy == 'adaptive' || !has(self.stopWhen)",
                    "stopWhen needs strategy: adaptive (a grid trains every trial)",
                ),
                cel("self.strategy == 'adaptive' || !has(self.computeShare)", _SHARE),
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
                cel(
                    "(self.strategy == 'isoflop') == has(self.computeBudgets)",
                    "strategy: isoflop needs computeBudgets (and computeBudgets needs it)",
                ),
                cel(
                    "self.strategy != 'isoflop' || !has(self.pruning) || "
                    "!has(self.pruning.enabled) || !self.pruning.enabled",
                    _ISOFLOP_PRUNING,
                ),
            ]
        }
    )

    strategy: Literal["grid", "adaptive", "isoflop"] = "grid"
    """grid: every model size at every data size. adaptive: every model size at the first
    fullGridDataSizes data sizes, then only a window around the predicted best. isoflop:
    every model size at each compute budget C, with the data size that spends it,
    D = C / (flopsPerParameterPerItem x parameters); dataSizes bounds D."""
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
    compute_share: Annotated[float, Field(gt=0, le=1)] | None = None
    """Adaptive only (default 0.4): from the sixth data size on, start none whose window
    would take the study's expected compute above this share of the full grid's, and
    predict the loss there instead, provided the fit so far predicts the largest data
    size's loss within a relative width of 0.5 (else train on: budget is the hard cap).
    1: train a window at every data size. Costs come from the cost model of the
    full-grid data sizes."""
    budget: Budget | None = None
    """Hard cap on device-hours: GPU-hours, or CPU-hours where the trials request no GPUs
    (any strategy)."""
    compute_budgets: ComputeBudgets | None = None
    """FLOPs per trial of an IsoFLOP study (strategy: isoflop)."""
    flops_per_parameter_per_item: Annotated[float, Field(gt=0, le=1e6)] = 6.0
    """k of C = k N D: training FLOPs per parameter per data item (6: a forward and a
    backward pass per token)."""
    pruning: PruningSpec = Field(default_factory=PruningSpec)
    """Stop trials that cannot win their slot (off by default; docs/pruning.md)."""

    @model_validator(mode="after")
    def _consistent(self) -> DesignSpec:
        if self.strategy != "adaptive" and self.stop_when is not None:
            raise ValueError("stopWhen needs strategy: adaptive (a grid trains every trial)")
        if self.compute_share is not None and self.strategy != "adaptive":
            raise ValueError(_SHARE)
        if self.strategy != "adaptive" and self.extend_model_sizes:
            raise ValueError("extendModelSizes needs strategy: adaptive")
        if (self.strategy == "isoflop") != (self.compute_budgets is not None):
            raise ValueError("strategy: isoflop needs computeBudgets (and computeBudgets needs it)")
        if self.strategy == "isoflop" and self.pruning.enabled:
            raise ValueError(_ISOFLOP_PRUNING)
        if (self.max_model_size is not None) != self.extend_model_sizes:
            raise ValueError(
                "extendModelSizes: true needs maxModelSize (and maxModelSize needs it)"
            )
        return self

    @property
    def adaptive(self) -> bool:
        return self.strategy == "adaptive"

    @property
    def share(self) -> float:
        """computeShare in force (1 for a grid or IsoFLOP study: no limit)."""
        if not self.adaptive:
            return 1.0
        return DEFAULT_COMPUTE_SHARE if self.compute_share is None else self.compute_share

    @property
    def isoflop(self) -> bool:
        return self.strategy == "isoflop"
