"""PyTorch Lightning in a scaling study: add ``ScalingStudyCallback()`` to the Trainer's
callbacks. Each validation is logged as progress, the best ``val_loss`` (the logged
metric named by ``monitor``) and the module's parameter count are the trial's result
(the best of the whole run: the record survives a resume), a run whose validations are
all NaN fails saying so (exit 78, one line), and SIGTERM saves ``last.ckpt`` in the
trial's checkpoint directory and exits 143 so the retry can
``trainer.fit(model, ckpt_path=last_checkpoint(trial))``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from scalingstudy_sdk.integrations.common import Evaluations, Tracker, budget, parameter_count
from scalingstudy_sdk.trial import Trial

CHECKPOINT = "last.ckpt"


def last_checkpoint(trial: Trial) -> str | None:
    if not trial.checkpoint_dir:
        return None
    path = Path(trial.checkpoint_dir) / CHECKPOINT
    return str(path) if path.exists() else None


def stepping_budget(trainer: Any) -> int | None:
    """The optimiser steps the fit will take (``estimated_stepping_batches``), or None
    where Lightning cannot say (no max_steps nor max_epochs: infinite; or it raises for
    a loader without a length)."""
    try:
        return budget(trainer.estimated_stepping_batches)
    except Exception:  # a budget is a nicety of the curve, never worth the trial
        return None


class ScalingStudyCallback(Callback):
    """The record of the validations is the callback's state, saved in every checkpoint
    (``last.ckpt`` on SIGTERM, and the user's own) and loaded on ``ckpt_path``: a resumed
    trial starts from the validations its checkpoint had seen."""

    def __init__(self, trial: Trial | None = None, monitor: str = "val_loss") -> None:
        self.tracker = Tracker(trial)
        self.monitor = monitor

    def state_dict(self) -> dict[str, Any]:
        return self.tracker.record.to_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tracker.record = Evaluations.from_state(state_dict)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.tracker.preemption.install()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        self.tracker.evaluated(int(trainer.global_step),
                               None if value is None else float(value),
                               step_budget=stepping_budget(trainer))  # fmt: skip

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        if self.tracker.preemption.requested:
            directory = self.tracker.trial.checkpoint_dir
            if directory:
                Path(directory).mkdir(parents=True, exist_ok=True)
                trainer.save_checkpoint(str(Path(directory) / CHECKPOINT))
            trainer.should_stop = True

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.tracker.preemption.requested:
            self.tracker.preemption.exit()
        self.tracker.report(parameter_count(pl_module), steps=int(trainer.global_step))
