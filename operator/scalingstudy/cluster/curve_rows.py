"""`curves.csv` of a cluster study, decided without I/O: one row per evaluation of every
trial whose curve is known, in the columns of a local run's curves.csv.

A trial's curve is its pod 0's log (`pod_logs.py`); a pruned trial whose pod is gone keeps
a compact curve in its record (``[step, validation_loss]`` pairs), which is used then.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalingstudy.cluster.manifests import (
    LABEL_DATA_SIZE,
    LABEL_LEARNING_RATE,
    LABEL_MODEL_SIZE,
    LABEL_SEED,
    LABEL_TRIAL,
    Obj,
)
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


def of_pod(pod: Obj) -> CurveTrial | None:
    """A running trial as its pod's labels place it (None: not a trial's pod)."""
    labels = pod.get("metadata", {}).get("labels") or {}
    try:
        rate = labels.get(LABEL_LEARNING_RATE)
        return CurveTrial(
            labels[LABEL_TRIAL], int(labels[LABEL_DATA_SIZE]), int(labels[LABEL_MODEL_SIZE]),
            int(labels[LABEL_SEED]), None if rate is None else float(rate), "Running",
        )  # fmt: skip
    except (KeyError, ValueError):
        return None


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


def write(path: Path, table: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(table)
