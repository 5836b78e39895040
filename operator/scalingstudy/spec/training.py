"""What each trial does and how its result is judged: the task, the training recipe,
the metric and the fit settings."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from scalingstudy.fitting.options import DEFAULT_BOOTSTRAP, Form
from scalingstudy.spec.base import (
    DNS_LABEL,
    SpecModel,
    cel,
)

#: Bounds of task.options: keys at the top level (the CRD schema checks it), and size as
#: compact JSON (checked by the operator and the local runner).
MAX_OPTIONS = 64
MAX_OPTIONS_BYTES = 16 * 1024

# --------------------------------------------------------------------------- task


class TaskSpec(SpecModel):
    """What to train: a built-in task of the trainer image, or a custom trainer's own name."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    """Task name. Built-in trainer tasks: teacher-student, char-lm, image-classification.
    With a custom trainer (trainer.command set) any DNS-label name is passed through."""

    data_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    """Seed of the fixed permutation whose prefixes are the nested training subsets.
    Every trial of a study uses the same one, so each smaller subset lies inside every
    larger one."""

    options: dict[str, Any] = Field(
        default_factory=dict,
        max_length=MAX_OPTIONS,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    """Task-specific settings passed to the trainer as JSON (for example corpus path,
    context length, model family), at most 16 KiB. The trainer rejects unknown keys with a
    configuration error."""

    @field_validator("options")
    @classmethod
    def _small(cls, options: dict[str, Any]) -> dict[str, Any]:
        # Every trial's environment carries them: a big blob would make every Job big and
        # every trainer die with "Argument list too long". Data belongs in a volume.
        size = len(json.dumps(options, separators=(",", ":")))
        if size > MAX_OPTIONS_BYTES:
            raise ValueError(
                f"is {size} bytes as JSON, at most {MAX_OPTIONS_BYTES} allowed: put data in a "
                "volume (trainer.volumes) and pass its path"
            )
        return options


# --------------------------------------------------------------------------- training

#: The largest share of a trial's step budget its warmup takes (warmupFraction's bound):
#: warmupSteps over it is shortened to it, so the decay keeps the other half.
MAX_WARMUP_SHARE = 0.5


class EarlyStopping(SpecModel):
    """Stop a trial when validation loss stops improving. The trial's result is always the
    lowest validation loss evaluated: minDelta only decides when to stop, never which
    evaluation is reported (an improvement smaller than minDelta is still the result)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.minDeltaMode) || self.minDeltaMode != 'relative' || "
                    "!has(self.minDelta) || self.minDelta < 1.0",
                    "a relative minDelta is a share of the best loss: below 1",
                )
            ]
        }
    )

    patience: Annotated[int, Field(ge=1, le=1000)] = 5
    """Evaluations without an improvement of at least minDelta before stopping."""
    min_delta: Annotated[float, Field(ge=0)] = 0.0
    """Smallest decrease of validation loss, below the loss at which patience last reset,
    that counts as an improvement (for patience only): in the loss's units (absolute), or
    a share of the best (lowest) loss evaluated so far (relative)."""
    min_delta_mode: Literal["absolute", "relative"] = "absolute"
    """absolute: an improvement is a decrease of at least minDelta below the loss at which
    patience last reset. relative: of at least minDelta x the best loss so far, the same
    demand on a high-loss small-data trial and a low-loss large-data one (an absolute
    minDelta stops the low-loss trials soonest and flattens the curve's end)."""

    @model_validator(mode="after")
    def _relative_below_one(self) -> EarlyStopping:
        if self.min_delta_mode == "relative" and self.min_delta >= 1.0:
            raise ValueError(
                f"a relative minDelta is a share of the best loss: below 1 (got {self.min_delta})"
            )
        return self

    def improves(self, loss: float, reference: float, best: float) -> bool:
        """Whether ``loss`` resets patience: a decrease of minDelta (absolute) or minDelta x
        ``best`` (relative; the lowest loss evaluated so far, this one included) below
        ``reference`` (the loss patience last reset at). Measured from the reset, small
        improvements add up: a slow steady decline resets patience once it totals minDelta,
        where each one measured from the best alone never would."""
        if not math.isfinite(reference):
            return math.isfinite(loss)
        scale = abs(best) if self.min_delta_mode == "relative" and math.isfinite(best) else 1.0
        return loss < reference - self.min_delta * scale


class ScheduleSpec(SpecModel):
    """The learning rate over a trial: a linear warmup, then a decay over the rest of the
    trial's own step budget (known at its start: epochs x subset / batch, clipped to
    [minSteps, maxSteps]), so every trial ends its schedule at its last step."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.warmupSteps) || !has(self.warmupFraction)",
                    "give warmupSteps or warmupFraction, not both",
                )
            ]
        }
    )

    kind: Literal["constant", "cosine", "linear"] = "constant"
    """constant (no decay), cosine or linear decay to minLearningRateRatio."""
    warmup_steps: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    """Steps of linear warmup from 0 to the peak; a trial whose step budget is under twice
    this warms up over half its budget instead, so its rate still decays to
    minLearningRateRatio (the result records the warmup each trial ran)."""
    warmup_fraction: Annotated[float, Field(ge=0, le=0.5)] | None = None
    """Warmup as a share of each trial's step budget."""
    min_learning_rate_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    """The learning rate at a trial's last step, over the peak (cosine and linear)."""

    @model_validator(mode="after")
    def _one_warmup(self) -> ScheduleSpec:
        if self.warmup_steps is not None and self.warmup_fraction is not None:
            raise ValueError("give warmupSteps or warmupFraction, not both")
        return self

    def warmup(self, budget: int) -> int:
        """Warmup steps of a trial with this step budget: at most MAX_WARMUP_SHARE of it, so
        a trial whose budget is near (or under) warmupSteps still decays to
        minLearningRateRatio at its last step, as every other trial of the study does,
        instead of ending at the peak."""
        if self.warmup_fraction is not None:
            steps = round(self.warmup_fraction * budget)
        else:
            steps = self.warmup_steps or 0
        return min(steps, math.floor(MAX_WARMUP_SHARE * budget))

    def multiplier(self, step: int, budget: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based) over the peak: warmup
        reaches the peak at its last step, the decay reaches minLearningRateRatio at the
        trial's last step (budget - 1), whatever the budget."""
        warm = self.warmup(budget)
        if step < warm:
            return (step + 1) / warm
        if self.kind == "constant":
            return 1.0
        ratio = self.min_learning_rate_ratio
        span = budget - 1 - warm
        if span <= 0:  # a budget of 1 or 2 steps: its last step is already the decay's end
            return ratio
        progress = min(max((step - warm) / span, 0.0), 1.0)
        if self.kind == "cosine":
            return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return ratio + (1 - ratio) * (1 - progress)


class LearningRateScaling(SpecModel):
    """How the learning rate changes with the model size knob."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.rule != 'inverse-width' || has(self.baseModelSize)",
                    "rule inverse-width needs baseModelSize",
                )
            ]
        }
    )

    rule: Literal["constant", "inverse-width"] = "constant"
    """constant: every model size trains at learningRate. inverse-width: the hidden weight
    matrices (those whose fan-in grows with width: a transformer's attention and MLP
    matrices, an MLP's hidden and output layers, an LSTM's recurrent matrices) train at
    learningRate x baseModelSize / modelSize, as maximal-update scaling prescribes for
    Adam; embeddings, biases and norms keep learningRate."""
    base_model_size: Annotated[int, Field(ge=1)] | None = None
    """The model size at which learningRate was tuned."""

    @model_validator(mode="after")
    def _base_given(self) -> LearningRateScaling:
        if self.rule == "inverse-width" and self.base_model_size is None:
            raise ValueError("rule inverse-width needs baseModelSize")
        return self

    def factor(self, model_size: int) -> float:
        """The hidden matrices' learning rate over learningRate."""
        if self.rule == "constant" or self.base_model_size is None:
            return 1.0
        return self.base_model_size / model_size


class TrainingSpec(SpecModel):
    """Optimisation settings shared by every trial (immutable once the study exists)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.minSteps <= self.maxSteps", "minSteps must not exceed maxSteps")
            ]
        }
    )

    epochs: Annotated[float, Field(gt=0, le=10000)] = 50.0
    """Budget in passes over the trial's subset, so small subsets get few steps and large ones
    many; clipped to [minSteps, maxSteps]. Early stopping usually ends a trial sooner."""
    min_steps: Annotated[int, Field(ge=1, le=100_000_000)] = 200
    """Fewest optimiser steps of any trial."""
    max_steps: Annotated[int, Field(ge=1, le=100_000_000)] = 5000
    """Most optimiser steps of any trial."""
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 64
    """Examples (or sequences) per optimiser step; capped at the subset size."""
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 1e-3
    """Peak learning rate of AdamW."""
    weight_decay: Annotated[float, Field(ge=0, le=10)] = 0.0
    """AdamW weight decay."""
    eval_every: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    """Steps between validation evaluations."""
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    """Early stopping on validation loss."""
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    """Learning-rate schedule (default: constant, no warmup)."""
    learning_rate_scaling: LearningRateScaling = Field(default_factory=LearningRateScaling)
    """Learning rate per model size (default: the same for every size)."""

    @model_validator(mode="after")
    def _steps_ordered(self) -> TrainingSpec:
        if self.min_steps > self.max_steps:
            raise ValueError(
                f"minSteps must not exceed maxSteps (got minSteps={self.min_steps}, "
                f"maxSteps={self.max_steps})"
            )
        return self


class MetricSpec(SpecModel):
    """The trial result the learning curve is made of."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z_][a-z0-9_]*$")] = (
        "validation_loss"
    )
    """Key of the trainer's result JSON (and suffix of its scalingstudy_trial_ gauge)."""
    goal: Literal["minimize"] = "minimize"
    """Only minimize: the power law describes a falling error or loss."""


class FitSpec(SpecModel):
    """How the learning curve is fitted and what it predicts."""

    form: Form = "auto"
    """auto: choose by information criterion whether the irreducible error gamma is identified."""
    confidence: Annotated[float, Field(ge=0.5, le=0.999)] = 0.9
    """Level of the bootstrap confidence intervals."""
    bootstrap: Annotated[int, Field(ge=0, le=10000)] = DEFAULT_BOOTSTRAP
    """Bootstrap resamples (0: no intervals)."""
    predict_at: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, max_length=32)
    """Data sizes to predict the loss at (default: 10 times the largest data size)."""
    target_loss: Annotated[float, Field(gt=0)] | None = None
    """Report the data size needed to reach this loss."""


class LearningRates(SpecModel):
    """A sweep: every trial once per learning rate; per data size and model size the best
    one is kept (as the best model size is kept per data size)."""

    values: list[Annotated[float, Field(gt=0, le=10)]] = Field(min_length=2, max_length=16)
    """Peak learning rates to try (each replaces training.learningRate)."""

    @model_validator(mode="after")
    def _distinct(self) -> LearningRates:
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"values must not repeat (got {self.values})")
        return self
