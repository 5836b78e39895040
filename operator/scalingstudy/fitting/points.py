"""Trial results as fit input, and the reduction to one point per data size (DESIGN §2.2)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def number(x: float) -> float | int:
    """A data size or count as JSON shows it: an int when it is whole."""
    return int(x) if float(x).is_integer() else float(x)


class FitError(ValueError):
    """Input the fit cannot use; the message says which point and why."""


class FitUnavailableError(FitError):
    """The fit ran to no answer (it timed out, its process crashed): it says nothing of the
    data, so it is tried again later and never recorded as a fit."""


@dataclass(frozen=True)
class Point:
    """One finished trial."""

    data_size: float
    loss: float
    model_size: float | None = None
    seed: str | None = None
    parameters: float | None = None
    #: FLOPs of the trial (IsoFLOP studies): which compute budget it belongs to.
    compute: float | None = None

    @property
    def size(self) -> float | None:
        """What the model-size law is fitted to: the parameter count, else the size knob."""
        return self.parameters if self.parameters is not None else self.model_size


@dataclass(frozen=True)
class BestPoint:
    """The learning-curve point of one data size: its best model size, loss averaged over seeds."""

    data_size: float
    loss: float
    model_size: float | None
    size: float | None
    seeds: int


def validate(points: Sequence[Point]) -> None:
    """Raise FitError naming the first unusable point."""
    for i, p in enumerate(points):
        for field in ("data_size", "loss", "model_size", "parameters", "compute"):
            value = getattr(p, field)
            if value is None and field in {"model_size", "parameters", "compute"}:
                continue
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise FitError(f"point {i}: {field} must be a finite number > 0 (got {value!r})")
    distinct = {p.data_size for p in points}
    if len(distinct) < 3:
        raise FitError(
            f"a learning curve needs at least 3 distinct data sizes (got {len(distinct)})"
        )


CellKey = tuple[float, float | None]


def cells(points: Iterable[Point]) -> dict[CellKey, list[Point]]:
    """Trials grouped by (data size, model size): the seeds of one configuration."""
    grouped: dict[CellKey, list[Point]] = defaultdict(list)
    for p in points:
        grouped[(p.data_size, p.model_size)].append(p)
    return dict(grouped)


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return math.fsum(items) / len(items)


def best_from_cells(cell_points: dict[CellKey, list[Point]]) -> list[BestPoint]:
    """Best model size per data size by mean loss over seeds; sorted by data size."""
    by_data: dict[float, list[BestPoint]] = defaultdict(list)
    for (data_size, model_size), members in cell_points.items():
        sizes = [p.size for p in members if p.size is not None]
        by_data[data_size].append(
            BestPoint(
                data_size=data_size,
                loss=_mean(p.loss for p in members),
                model_size=model_size,
                size=_mean(sizes) if sizes else None,
                seeds=len(members),
            )
        )
    return [
        min(candidates, key=lambda b: (b.loss, b.model_size or 0.0))
        for _, candidates in sorted(by_data.items())
    ]


def best_per_data_size(points: Iterable[Point]) -> list[BestPoint]:
    return best_from_cells(cells(points))


def best_rate_per_cell(
    rows: Iterable[tuple[tuple[float, float | None], float | None, float]],
) -> dict[tuple[float, float | None], float]:
    """Per (data size, model size) of a learning-rate sweep, the rate with the lowest mean
    log loss over its rows (the smaller rate on a tie): the one rule by which a run, the
    operator and `scalingstudy fit` keep one configuration per cell. ``rows``: (cell,
    rate, loss); rows without a rate or a positive loss are skipped."""
    logs: dict[tuple[float, float | None], dict[float, list[float]]] = {}
    for cell, rate, loss in rows:
        if rate is not None and loss and loss > 0:
            logs.setdefault(cell, {}).setdefault(rate, []).append(math.log(loss))
    out = {}
    for cell, by_rate in logs.items():
        means = {rate: sum(v) / len(v) for rate, v in by_rate.items()}
        out[cell] = min(means, key=lambda r: (means[r], r))
    return out
