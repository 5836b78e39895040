"""`transformers.Trainer` in a scaling study: add ``ScalingStudyCallback()`` to the
Trainer's callbacks. Each evaluation is logged as progress, the best ``eval_loss`` and the
model's parameter count are the trial's result, and SIGTERM saves a checkpoint (in
``args.output_dir``; point it at ``trial.checkpoint_dir``) and exits 143 so the retry can
``trainer.train(resume_from_checkpoint=last_checkpoint(trial))``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from scalingstudy_sdk.integrations.common import Tracker, parameter_count
from scalingstudy_sdk.trial import Trial


def last_checkpoint(trial: Trial) -> str | None:
    """The newest ``checkpoint-N`` folder in the trial's checkpoint directory, if any."""
    if not trial.checkpoint_dir:
        return None
    steps = {
        int(p.name.removeprefix("checkpoint-")): p
        for p in Path(trial.checkpoint_dir).glob("checkpoint-*")
        if p.name.removeprefix("checkpoint-").isdigit()
    }
    return str(steps[max(steps)]) if steps else None


class ScalingStudyCallback(TrainerCallback):
    def __init__(self, trial: Trial | None = None, metric: str = "eval_loss") -> None:
        self.tracker = Tracker(trial)
        self.metric = metric

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tracker.preemption.install()

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        metrics = kwargs.get("metrics") or {}
        self.tracker.evaluated(int(state.global_step), metrics.get(self.metric))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.tracker.preemption.requested:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.tracker.preemption.requested:
            self.tracker.preemption.exit()
        self.tracker.report(parameter_count(kwargs.get("model")),
                            steps=int(state.global_step))  # fmt: skip
