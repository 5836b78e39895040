"""What a trial trained (`Trained`, the loop's result before it becomes the result
JSON) and the optimiser's parameter groups with their peak rates (`param_groups`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from scalingstudy.spec import TrainingSpec
from scalingstudy_trainer.tasks.base import Task


@dataclass(frozen=True)
class Trained:
    validation_loss: float
    train_loss: float
    steps: int
    samples_seen: int
    parameters: int
    non_embedding_parameters: int | None
    best_step: int
    seconds: float
    batch_size: int
    resumed_from_step: int
    #: Steps taken over the step budget (below 1 after early stopping), and the learning
    #: rate of the last step over the peak: where on its schedule the trial stopped.
    schedule_progress: float = 1.0
    final_learning_rate_ratio: float = 1.0
    #: The schedule the trial ran (which a short budget may shorten): its step budget,
    #: warmup steps, peak learning rate and the rate of its last step.
    step_budget: int = 0
    warmup_steps: int = 0
    peak_learning_rate: float = 0.0
    final_learning_rate: float = 0.0
    #: With learningRateScaling, the peak and last-step rates of the hidden matrices (the
    #: peak above times the rule's factor for this size); None when no group was scaled.
    hidden_peak_learning_rate: float | None = None
    hidden_final_learning_rate: float | None = None
    #: The step (1-based) whose training loss was first NaN or infinite; None if none was.
    diverged_at_step: int | None = None
    #: The largest micro-batch of the last step, and whether an out-of-memory changed it in
    #: a BatchNorm model (whose normalisation batch it is, so its results changed too).
    micro_batch: int = 0
    normalisation_batch_changed: bool = False


def param_groups(
    task: Task, model: torch.nn.Module, model_size: int, training: TrainingSpec
) -> list[dict[str, Any]]:
    """AdamW's parameter groups, each with its peak learning rate: the hidden matrices at
    learningRate x learningRateScaling's factor for this size, the rest at learningRate."""
    factor = training.learning_rate_scaling.factor(model_size)
    peak = training.learning_rate
    hidden = task.hidden_matrices(model) if factor != 1.0 else []
    ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr": peak, "peak_lr": peak}]
    if hidden:
        groups.append({"params": hidden, "lr": peak * factor, "peak_lr": peak * factor})
    return groups
