"""What every callback does the same way: the best validation loss so far, progress lines,
and the preemption flag."""

from __future__ import annotations

import math
from typing import Any

from scalingstudy_sdk.trial import Preemption, Trial


class Tracker:
    """The best validation loss of a trial's evaluations, each logged as progress."""

    def __init__(self, trial: Trial | None) -> None:
        self.trial = trial or Trial.from_env_or_exit()
        self.best = math.inf
        self.evaluations = 0
        self.preemption = Preemption()

    def evaluated(self, step: int, loss: float | None, **fields: Any) -> None:
        if loss is None or not math.isfinite(loss):
            return
        self.evaluations += 1
        self.best = min(self.best, float(loss))
        self.trial.progress(step=step, validation_loss=float(loss), **fields)

    def report(self, parameters: int | None, **extra: Any) -> None:
        """The result: the best validation loss (none evaluated: the callback's user forgot
        an evaluation strategy, which is a configuration error)."""
        if self.evaluations == 0:
            raise RuntimeError(
                "scalingstudy: the trainer never evaluated: set an evaluation strategy / "
                "validation loop so the study has a validation loss to fit"
            )
        self.trial.report(validation_loss=self.best, parameters=parameters, **extra)


def parameter_count(model: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except (AttributeError, TypeError):
        return None
