"""The bootstrap of the learning curve: replicates of the study redrawn and refitted.

Over trials when configurations have several seeds (the design's bootstrap), else over
the curve's log residuals inside the power-law region. Each replicate refits the power
law (the parametric spread of predictions and the alpha/gamma intervals) and the grid
model-size law (its beta_p interval when the continuous optima are too few).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from scalingstudy.fitting.curve import CurveFit, PowerLaw, fit_log_linear, fit_power_law, local_grid
from scalingstudy.fitting.model_size import grid_size_law
from scalingstudy.fitting.options import FitOptions
from scalingstudy.fitting.points import BestPoint, Point, best_from_cells, cells

#: A replicate as arrays: data sizes, losses, model sizes (nan: unknown).
Replicate = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Replicates:
    """The refitted laws of every replicate that could be fitted."""

    laws: list[PowerLaw] = field(default_factory=list)
    size_betas: list[float] = field(default_factory=list)
    failed: int = 0


def _arrays(best: Sequence[BestPoint]) -> Replicate:
    return (
        np.array([b.data_size for b in best], dtype=float),
        np.array([b.loss for b in best], dtype=float),
        np.array([np.nan if b.size is None else b.size for b in best], dtype=float),
    )


def _centred_log_residuals(observed: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Log residuals, centred and inflated for the two fitted parameters (a residual
    bootstrap draws from them)."""
    r = np.log(observed) - np.log(predicted)
    return np.asarray((r - r.mean()) * np.sqrt(len(r) / max(len(r) - 2, 1)))


def _over_trials(
    grouped: dict[tuple[float, float | None], list[Point]], rng: np.random.Generator
) -> Callable[[], Replicate]:
    keys = list(grouped)

    def draw() -> Replicate:
        drawn = {
            k: [grouped[k][j] for j in rng.integers(0, len(grouped[k]), len(grouped[k]))]
            for k in keys
        }
        return _arrays(best_from_cells(drawn))

    return draw


def _over_residuals(
    best: Sequence[BestPoint], law: PowerLaw, window: tuple[int, int], rng: np.random.Generator
) -> Callable[[], Replicate]:
    """Only the power-law region is resampled; points outside it keep their values."""
    m, observed, fixed_sizes = _arrays(best)
    n = len(m)
    lo, hi = window
    region_fit = law(m[lo:hi])
    residuals = _centred_log_residuals(observed[lo:hi], region_fit)
    size_fit = grid_size_law(best)
    size_res: np.ndarray | None = None
    if size_fit is not None and np.isfinite(fixed_sizes).all():
        size_res = _centred_log_residuals(fixed_sizes, size_fit[0] * m ** size_fit[1])

    def draw() -> Replicate:
        loss = observed.copy()
        loss[lo:hi] = region_fit * np.exp(rng.choice(residuals, hi - lo))
        if size_res is not None and size_fit is not None:
            new_sizes = size_fit[0] * m ** size_fit[1] * np.exp(rng.choice(size_res, n))
        else:
            new_sizes = fixed_sizes
        return m, loss, new_sizes

    return draw


def bootstrap(
    points: Sequence[Point],
    best: Sequence[BestPoint],
    fit: CurveFit,
    window: tuple[int, int],
    options: FitOptions,
) -> Replicates:
    """``options.bootstrap`` replicates of the region's power law and the size law."""
    out = Replicates()
    if options.bootstrap <= 0:
        return out
    rng = np.random.default_rng(options.random_seed)
    lo, hi = window
    grouped = cells(points)
    several_seeds = any(len(members) > 1 for members in grouped.values())
    draw = (
        _over_trials(grouped, rng) if several_seeds else _over_residuals(best, fit.law, window, rng)
    )
    with_gamma = fit.k == 3
    grid = local_grid(fit.law.beta, max(0.05, 0.5 * abs(fit.law.beta)))
    for _ in range(options.bootstrap):
        m_all, y_all, sizes = draw()
        if len(m_all) < 3:
            out.failed += 1
            continue
        law = fit_power_law(
            m_all[lo:hi], y_all[lo:hi], with_gamma=with_gamma, polish=False, grid=grid
        ).law
        out.laws.append(law)
        sized = np.isfinite(sizes)
        if sized.sum() >= 3:
            out.size_betas.append(fit_log_linear(m_all[sized], sizes[sized])[1])
    return out
