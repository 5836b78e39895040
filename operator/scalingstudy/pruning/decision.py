"""What pruning decides on and what it decides: plain values, without the forecast's
numerical code, so an executor names them without loading numpy (the operator's process
stays small; `decide` is imported where it runs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from scalingstudy_sdk.curve import Curve

if TYPE_CHECKING:
    from scalingstudy.spec import ScalingStudySpec


@dataclass(frozen=True)
class Competitor:
    """One trial of a study as pruning sees it: where it sits, its curve from its own
    log, and its recorded final once finished."""

    trial: str
    data_size: int
    model_size: int
    seed: int
    learning_rate: float | None
    curve: Curve
    final: float | None
    """A finished trial's recorded loss; None while running (or pruned, or failed)."""
    running: bool


@dataclass(frozen=True)
class Prune:
    """A trial to stop, and why (one line)."""

    trial: str
    step: int
    best_loss: float | None
    message: str
    against: str | None = None
    """The competitor it could not beat: the decision stands while that trial is planned
    and has not failed (`scheduling.lapsed_prunes`)."""


def judged_seeds(spec: ScalingStudySpec) -> tuple[list[int], bool]:
    """What both executors tell `decide` of a study: its planned seeds (an adaptive design
    prunes only with one: `spec.pruning.PRUNING_ADAPTIVE_SEEDS`), and whether it sweeps
    rates (then model sizes do not compete across seeds: `pruning.arms`)."""
    return list(range(spec.seeds)), len(spec.learning_rate_values()) > 1
