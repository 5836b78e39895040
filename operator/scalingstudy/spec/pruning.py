"""Pruning's settings (`design.pruning`): which trials may be stopped early, and how sure
the rule must be (docs/pruning.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from scalingstudy.spec.base import SpecModel, cel

#: The rungs of pruning: fractions of its step budget at which a trial may be judged.
DEFAULT_PRUNING_RUNGS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_RUNGS_ORDER = "pruning.rungs must increase strictly, each in (0, 1)"


#: Pruning compares a running trial's validation-loss curve with its competitors'
#: recorded finals: those must be the same quantity (issue 38, like with like).
PRUNING_METRIC = (
    "design.pruning.enabled needs metric.name validation_loss: pruning forecasts "
    "validation-loss curves and compares them with the competitors' final metric"
)

#: An adaptive design gives extra seeds to the sizes it keeps, later: no pass sees a
#: size's whole mean over seeds, which is what the results pick by (docs/pruning.md).
PRUNING_ADAPTIVE_SEEDS = (
    "design.pruning.enabled with design.strategy adaptive needs seeds: 1: the design adds "
    "seeds to the model sizes it keeps later, so no pruning decision could see a size's "
    "mean over its seeds, which the results pick by"
)

#: The study-level rules of pruning (they read the metric, the strategy and the seeds),
#: in the CRD as CEL and in `pruning_problem` for the spec model.
STUDY_PRUNING_RULES = [
    cel(
        "!has(self.design) || !has(self.design.pruning) || "
        "!has(self.design.pruning.enabled) || !self.design.pruning.enabled || "
        "!has(self.metric) || !has(self.metric.name) || "
        "self.metric.name == 'validation_loss'",
        PRUNING_METRIC,
    ),
    cel(
        "!has(self.design) || !has(self.design.pruning) || "
        "!has(self.design.pruning.enabled) || !self.design.pruning.enabled || "
        "!has(self.design.strategy) || self.design.strategy != 'adaptive' || "
        "!has(self.seeds) || self.seeds == 1",
        PRUNING_ADAPTIVE_SEEDS,
    ),
]


def pruning_problem(enabled: bool, adaptive: bool, metric: str, seeds: int) -> None:
    """`STUDY_PRUNING_RULES` for the spec model: ValueError naming the value."""
    if enabled and metric != "validation_loss":
        raise ValueError(f"{PRUNING_METRIC} (got metric.name {metric})")
    if enabled and adaptive and seeds > 1:
        raise ValueError(f"{PRUNING_ADAPTIVE_SEEDS} (got seeds {seeds})")


class PruningSpec(SpecModel):
    """Stop trials that cannot win their slot (docs/pruning.md): a running trial whose
    predicted final loss, with an uncertainty backtested on its own partial curve, is
    worse with high confidence than the best competitor's pessimistic final; once enough
    trials finished, the uncertainty is the spread of the study's own forecast errors.
    Competitors are the learning rates of one (data size, model size) and the model sizes
    of one data size; with several seeds each rate or size is judged by the mean over its
    seeds, as the results pick it. Needs metric.name validation_loss. Off by default:
    benchmarks/pruning.py measures what it saves and whether it keeps every winner."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.rungs) || (self.rungs.all(r, r > 0.0 && r < 1.0) && "
                    "self.rungs.isSorted() && "
                    "self.rungs.all(r, self.rungs.filter(x, x == r).size() == 1))",
                    _RUNGS_ORDER,
                )
            ]
        }
    )

    enabled: bool = False
    """Stop trials that cannot win (default false: see docs/pruning.md for what the
    benchmark measured)."""
    rungs: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=lambda: list(DEFAULT_PRUNING_RUNGS), min_length=1, max_length=32
    )
    """Fractions of a trial's step budget at which it is judged, on its curve up to that
    point (default 0.2, 0.3, ... 0.9); never before the first."""
    confidence: Annotated[float, Field(ge=0.5, lt=1)] = 0.99
    """One-sided confidence that a stopped trial's final loss is above its best
    competitor's pessimistic final."""
    min_evaluations: Annotated[int, Field(ge=3, le=1000)] = 5
    """Finite evaluations a trial's curve needs before it is judged (a robust fit over
    several points, never one evaluation)."""
    min_calibration_trials: Annotated[int, Field(ge=2, le=1000)] = 10
    """Finished trials (of any slot) whose backtests at a rung calibrate the forecasts
    made there: from then on a forecast's interval is the empirical spread of the
    study's own forecast errors, not the curve's conservative one (docs/pruning.md)."""
    compare_model_sizes: bool = True
    """Also compare the model sizes of one data size, not only the learning rates of one
    (data size, model size) (with several seeds and a rate sweep, only the rates: a size's
    loss is then its picked rate's). False keeps every model size to its end (the joint
    fit in model size and data reads them all)."""

    @model_validator(mode="after")
    def _ordered(self) -> PruningSpec:
        if any(b <= a for a, b in zip(self.rungs, self.rungs[1:], strict=False)):
            raise ValueError(f"{_RUNGS_ORDER} (got {self.rungs})")
        return self
