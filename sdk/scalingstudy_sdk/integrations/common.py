"""What every callback does the same way: the record of a trial's evaluations (best
validation loss and its step, the first non-finite one), progress lines, the preemption
flag, and the result or the one-line failure at the end.

The record is a value the callbacks keep in the library's checkpoint (Lightning's
callback state, the Hugging Face TrainerState's evaluation history), so a trial resumed
after a preemption reports the best evaluation of the whole run, not of its last part."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from scalingstudy_sdk import contract
from scalingstudy_sdk.trial import Preemption, Trial

NEVER_EVALUATED = (
    "the trainer never evaluated: set an evaluation strategy / validation loop so the "
    "study has a validation loss to fit"
)


def _word(value: float) -> str:
    """A non-finite loss as the message prints it."""
    return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")


@dataclass(frozen=True)
class Evaluations:
    """What a trial's evaluations so far say. ``diverged_step`` is the step of the first
    non-finite validation loss (``diverged_value`` names it: NaN, inf): the run diverged
    there. Finite evaluations before (or after) it still count towards ``best``."""

    best: float = math.inf
    best_step: int | None = None
    finite: int = 0
    diverged_step: int | None = None
    diverged_value: str | None = None

    def add(self, step: int, loss: float) -> Evaluations:
        """The record with one more evaluation."""
        if not math.isfinite(loss):
            if self.diverged_step is not None:
                return self
            return replace(self, diverged_step=step, diverged_value=_word(loss))
        if loss < self.best:
            return replace(self, best=loss, best_step=step, finite=self.finite + 1)
        return replace(self, finite=self.finite + 1)

    @classmethod
    def of(cls, history: Iterable[tuple[int, float]]) -> Evaluations:
        """The record of (step, loss) evaluations, in order."""
        record = cls()
        for step, loss in history:
            record = record.add(step, loss)
        return record

    def failure(self) -> str | None:
        """Why no result can be reported (None: the best finite evaluation is one)."""
        if self.finite:
            return None
        if self.diverged_step is not None:
            return (
                f"the run diverged: validation loss {self.diverged_value} from step "
                f"{self.diverged_step}"
            )
        return NEVER_EVALUATED

    def extras(self) -> dict[str, int]:
        """Result keys beside the loss: the best evaluation's step and, for a run that
        diverged after it, where."""
        out = {} if self.best_step is None else {"best_step": self.best_step}
        if self.diverged_step is not None:
            out["diverged_at_step"] = self.diverged_step
        return out

    def to_state(self) -> dict[str, Any]:
        """Plain values for a checkpoint (the best of no evaluation is None, not inf)."""
        return {**asdict(self), "best": self.best if self.finite else None}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Evaluations:
        """The record saved by ``to_state``; a field missing or malformed (a checkpoint of
        another version) is left at its default, and a best without a finite number is
        no best."""
        best = _typed(state.get("best"), (int, float), None)
        finite = _typed(state.get("finite"), int, 0)
        measured = best is not None and math.isfinite(best) and finite > 0
        return cls(
            best=float(best) if measured else math.inf,
            best_step=_typed(state.get("best_step"), int, None) if measured else None,
            finite=finite if measured else 0,
            diverged_step=_typed(state.get("diverged_step"), int, None),
            diverged_value=_typed(state.get("diverged_value"), str, None),
        )


def _typed(value: Any, kind: type | tuple[type, ...], default: Any) -> Any:
    """``value`` if it is of ``kind`` (a bool is no number), else ``default``."""
    return value if isinstance(value, kind) and not isinstance(value, bool) else default


class Tracker:
    """A trial's evaluations as a callback sees them: each logged as progress, the record
    kept for the checkpoint, the result (or the failure) at the end."""

    def __init__(self, trial: Trial | None) -> None:
        self.trial = trial or Trial.from_env_or_exit()
        self.record = Evaluations()
        self.preemption = Preemption()

    @property
    def best(self) -> float:
        return self.record.best

    @property
    def evaluations(self) -> int:
        """Finite evaluations so far (of the whole run, a resumed one included)."""
        return self.record.finite

    def evaluated(self, step: int, loss: float | None, **fields: Any) -> None:
        """One evaluation (None: the metric was not among this evaluation's numbers)."""
        if loss is None:
            return
        loss = float(loss)
        first_divergence = not math.isfinite(loss) and self.record.diverged_step is None
        self.record = self.record.add(step, loss)
        if math.isfinite(loss):
            self.trial.progress(step=step, validation_loss=loss, **fields)
        elif first_divergence:
            # NaN/Infinity in the line (as the built-in trainer prints it): the curve shows
            # the divergence, which pruning stops at its first rung.
            self.trial.progress(step=step, validation_loss=loss, non_finite=_word(loss), **fields)

    def report(self, parameters: int | None, **extra: Any) -> None:
        """The result: the best finite validation loss. None to report (the run diverged,
        or nothing evaluated: the user forgot an evaluation strategy) is a failure the
        retry cannot fix: one line on stderr and exit 78."""
        failure = self.record.failure()
        if failure is not None:
            print(f"scalingstudy: {failure}", file=sys.stderr, flush=True)
            raise SystemExit(contract.EXIT_CONFIG_ERROR)
        self.trial.report(validation_loss=self.record.best, parameters=parameters,
                          **self.record.extras(), **extra)  # fmt: skip


def budget(value: Any) -> int | None:
    """A library's step budget as the curve records it: a positive finite count, else
    None (HF's max_steps is -1 before it is known, Lightning's estimate may be inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) and value > 0 else None


def parameter_count(model: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except (AttributeError, TypeError):
        return None
