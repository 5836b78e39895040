"""The rows of `curves.csv`, decided without I/O: one per evaluation of every trial whose
curve is known, the same for a local run (its trials' logs) and `scalingstudy get` (its
pods' logs). A pruned trial whose log is gone keeps a compact curve in its record
(``[step, validation_loss]`` pairs), which is used then."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalingstudy.records import TrialRecord
from scalingstudy_sdk.curve import Curve, CurvePoint

CURVE_COLUMNS = ("trial", "data_size", "model_size", "seed", "learning_rate", "status",
                 "step", "samples_seen", "validation_loss", "train_loss", "seconds")  # fmt: skip
CURVES_FILE = "curves.csv"


@dataclass(frozen=True)
class CurveTrial:
    """Which trial a curve is of, and how it stands (Running/Succeeded/Failed/Pruned)."""

    trial: str
    data_size: int
    model_size: int
    seed: int
    learning_rate: float | None
    status: str


def of_record(record: TrialRecord) -> CurveTrial:
    return CurveTrial(record.trial, record.data_size, record.model_size, record.seed,
                      record.learning_rate, record.status)  # fmt: skip


def compact_curve(record: TrialRecord) -> Curve | None:
    """The compact curve a record keeps (a pruned trial's), as a Curve; None without one."""
    pairs: Any = getattr(record, "curve", None)
    if not pairs:
        return None
    points = []
    for pair in pairs:
        try:
            step, loss = int(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError):
            continue
        points.append(CurvePoint(step=step, validation_loss=loss))
    return Curve(tuple(points))


def _cell(value: float | int | None) -> float | int | str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def rows(trials: Sequence[CurveTrial], curves: Mapping[str, Curve]) -> list[dict[str, Any]]:
    """One row per point of each trial's curve, trials in the order given."""
    out: list[dict[str, Any]] = []
    for t in trials:
        curve = curves.get(t.trial)
        if curve is None:
            continue
        for p in curve.points:
            out.append({
                "trial": t.trial, "data_size": t.data_size, "model_size": t.model_size,
                "seed": t.seed, "learning_rate": _cell(t.learning_rate), "status": t.status,
                "step": p.step, "samples_seen": _cell(p.samples_seen),
                "validation_loss": _cell(p.validation_loss), "train_loss": _cell(p.train_loss),
                "seconds": _cell(p.seconds),
            })  # fmt: skip
    return out
