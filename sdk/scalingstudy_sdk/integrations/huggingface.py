"""`transformers.Trainer` in a scaling study: add ``ScalingStudyCallback()`` to the
Trainer's callbacks. Each evaluation is logged as progress, the best ``eval_loss`` and the
model's parameter count are the trial's result (the best of the whole run: the record
survives a resume), a run whose evaluations are all NaN fails saying so (exit 78, one
line), and SIGTERM saves a checkpoint (in ``args.output_dir``; point it at
``trial.checkpoint_dir``) and exits 143 so the retry can
``trainer.train(resume_from_checkpoint=last_checkpoint(trial))``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from scalingstudy_sdk.integrations.common import Evaluations, Tracker, budget, parameter_count
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


def evaluations_of(log_history: Iterable[Mapping[str, Any]], metric: str) -> Evaluations:
    """The record of the evaluations in a TrainerState's history (each evaluation's
    metrics are logged there with their step, and saved in every checkpoint's
    trainer_state.json)."""
    return Evaluations.of(
        (int(entry.get("step", 0)), float(entry[metric]))
        for entry in log_history
        if isinstance(entry.get(metric), int | float) and not isinstance(entry[metric], bool)
    )


class ScalingStudyCallback(TrainerCallback):
    """The record of the evaluations lives in the TrainerState (its ``log_history``),
    which the Trainer saves in each checkpoint and loads on ``resume_from_checkpoint``:
    a resumed trial starts from the evaluations its checkpoint had seen."""

    def __init__(self, trial: Trial | None = None, metric: str = "eval_loss") -> None:
        self.tracker = Tracker(trial)
        self.metric = metric

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tracker.preemption.install()
        self.tracker.record = evaluations_of(state.log_history, self.metric)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        metrics = kwargs.get("metrics") or {}
        self.tracker.evaluated(int(state.global_step), metrics.get(self.metric),
                               step_budget=budget(getattr(state, "max_steps", None)))  # fmt: skip

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.tracker.preemption.requested:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.tracker.preemption.requested:
            self.tracker.preemption.exit()
        self.tracker.report(parameter_count(kwargs.get("model")),
                            steps=int(state.global_step))  # fmt: skip
