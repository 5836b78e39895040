"""The small rules the adaptive design decides with (`adaptive.py`): the noise between
seeds, where a fit puts the best model size among the candidates, a window of sizes
around it, the best grid point, and whether a stage's fit meets stopWhen."""

from __future__ import annotations

import math
from collections.abc import Mapping

from scalingstudy.spec import StopWhen
from scalingstudy.status import StageFit, TrialRecord

Cell = tuple[int, int]  # (data size, model size)


def mean_log(rs: list[TrialRecord]) -> float | None:
    ok = [math.log(r.loss) for r in rs if r.status == "Succeeded" and r.loss]
    return sum(ok) / len(ok) if ok else None


def seed_noise(cells: Mapping[Cell, list[TrialRecord]], data_sizes: set[int]) -> float | None:
    """Pooled standard deviation of log loss between seeds of the same cell, over the
    given data sizes; None before any cell has two succeeded seeds."""
    ss, dof = 0.0, 0
    for (d, _), rs in cells.items():
        if d not in data_sizes:
            continue
        ok = [math.log(r.loss) for r in rs if r.status == "Succeeded" and r.loss]
        if len(ok) >= 2:
            mean = sum(ok) / len(ok)
            ss += sum((x - mean) ** 2 for x in ok)
            dof += len(ok) - 1
    return math.sqrt(ss / dof) if dof else None


def predicted_index(fit: StageFit, data_size: int, sizes: list[float]) -> float | None:
    """Where the fit's best parameter count at ``data_size`` falls among the candidate
    model sizes (their parameter counts ``sizes``, increasing), as a fractional index
    interpolated in log parameters; None without a model-size law."""
    if fit.size_alpha is None or fit.size_beta is None or fit.size_alpha <= 0:
        return None
    target = math.log(fit.size_alpha) + fit.size_beta * math.log(data_size)
    logs = [math.log(max(s, 1e-300)) for s in sizes]
    if target <= logs[0]:
        return (
            0.0 if len(logs) < 2 or logs[1] == logs[0] else (target - logs[0]) / (logs[1] - logs[0])
        )
    for i in range(1, len(logs)):
        if target <= logs[i]:
            span = logs[i] - logs[i - 1]
            return i - 1 + ((target - logs[i - 1]) / span if span > 0 else 0.0)
    last = len(logs) - 1
    span = logs[last] - logs[last - 1] if last >= 1 else 0.0
    return last + ((target - logs[last]) / span if span > 0 else 0.0)


def window(centre: float, width: int, reachable: int) -> range:
    """``width`` consecutive indices whose middle is nearest ``centre``, within
    [0, reachable)."""
    width = min(width, reachable)
    start = math.floor(centre - (width - 1) / 2 + 0.5)
    start = min(max(start, 0), reachable - width)
    return range(start, start + width)


def grid_best(cells: Mapping[Cell, list[TrialRecord]], d: int, models: list[int]) -> int | None:
    scored = [(m, mean_log(cells.get((d, m), []))) for m in models]
    ranked = [(v, i) for i, (_, v) in enumerate(scored) if v is not None]
    return min(ranked)[1] if ranked else None


def criteria_met(fit: StageFit, stop: StopWhen) -> bool:
    """Every stopWhen criterion holds for the fit (an interval it lacks does not)."""
    checks = []
    if stop.beta_interval_width is not None:
        checks.append(
            fit.beta_interval_width is not None
            and fit.beta_interval_width <= stop.beta_interval_width
        )
    if stop.prediction_relative_width is not None:
        checks.append(
            fit.prediction_relative_width is not None
            and fit.prediction_relative_width <= stop.prediction_relative_width
        )
    if stop.largest_data_size_relative_width is not None:
        checks.append(
            fit.largest_relative_width is not None
            and fit.largest_relative_width <= stop.largest_data_size_relative_width
        )
    return bool(checks) and all(checks)
