"""The best model size between grid points, and beta_p fitted with censoring.

Taking the best grid point per data size makes ``params(m)`` a step function when
the grid is coarse: a quickstart whose best width is 64 from m = 200 on says
little about beta_p. Per data size this module fits a parabola in log(parameters)
to the log loss of the best model and its two neighbours; its vertex (kept
between the neighbours) estimates the optimum. When the best model is the
smallest or the largest trained there, the optimum is only known to lie beyond
the midpoint (in log size) between that edge and its neighbour: the point is
*censored* (an upper or a lower bound), not a value.

beta_p is then the slope of ``log params = log alpha_p + beta_p * log m + e``,
e ~ N(0, s**2), by maximum likelihood with censored points entering through the
normal tail probability (a Tobit regression; without censoring it is ordinary
least squares). Its interval is the profile-likelihood interval with the F
threshold that is exact for least squares, ``n * log(1 + F(1, n - 2) / (n - 2))``,
so censoring widens it honestly instead of being ignored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize
from scipy.special import fdtri, log_ndtr

from scalingstudy.fitting.curve import fit_log_linear
from scalingstudy.fitting.points import BestPoint, Point, number
from scalingstudy.fitting.report import Interval, ModelSizeLaw, SizeEstimate
from scalingstudy.words import plural

Censoring = Literal["above", "below"] | None


@dataclass(frozen=True)
class Optimum:
    """The estimated best parameter count at one data size."""

    data_size: float
    parameters: float
    #: "above": the largest model trained was best, the optimum is at least this bound;
    #: "below": the smallest was best, the optimum is at most this bound.
    censored: Censoring
    grid_best: float


@dataclass(frozen=True)
class SizeLaw:
    alpha: float
    beta: float
    interval: list[float | None] | None
    sigma: float


def optima(points: Sequence[Point]) -> list[Optimum]:
    """One estimate per data size that trained at least two model sizes."""
    table: dict[float, dict[float, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for p in points:
        if p.model_size is not None and p.size is not None:
            table[p.data_size][p.model_size].append((p.size, p.loss))
    out = []
    for data_size in sorted(table):
        rows = sorted(
            (float(np.mean([s for s, _ in v])), float(np.mean([loss for _, loss in v])))
            for v in table[data_size].values()
        )
        if len(rows) < 2:
            continue
        size = np.log([s for s, _ in rows])
        loss = np.log([loss for _, loss in rows])
        i = int(np.argmin(loss))
        best = float(math.exp(size[i]))
        if i == 0 or i == len(rows) - 1:
            # With a loss convex in log size, a best model at the edge puts the optimum
            # on the outer side of the midpoint between it and its neighbour.
            j = 1 if i == 0 else i - 1
            bound = float(math.exp(0.5 * (size[i] + size[j])))
            out.append(Optimum(data_size, bound, "below" if i == 0 else "above", best))
            continue
        vertex = _vertex(size[i - 1 : i + 2], loss[i - 1 : i + 2])
        out.append(Optimum(data_size, math.exp(vertex), None, best))
    return out


def _vertex(x: np.ndarray, y: np.ndarray) -> float:
    """Vertex of the parabola through three points, kept within them (x ascending)."""
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return float(x[1])
    return float(np.clip(-b / (2 * a), x[0], x[2]))


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _loglik(theta: np.ndarray, lx: np.ndarray, ly: np.ndarray, cens: np.ndarray) -> float:
    intercept, slope, log_s = theta
    s = math.exp(log_s)
    z = (ly - intercept - slope * lx) / s
    exact = z[cens == 0]
    # The normal log density and tails from scipy.special directly: scipy.stats' generic
    # distribution layer cost 20x more in this inner loop of every profile.
    ll = float(np.sum(-0.5 * exact * exact - _HALF_LOG_2PI - log_s))
    # "above": true optimum >= bound -> P(e >= bound - mean) = sf(z); "below": cdf(z).
    ll += float(np.sum(log_ndtr(-z[cens == 1])) + np.sum(log_ndtr(z[cens == -1])))
    return ll


def _start(lx: np.ndarray, ly: np.ndarray, slope: float) -> tuple[float, float]:
    """Intercept and log scale of the least-squares line of the given slope."""
    intercept = float(np.mean(ly - slope * lx))
    return intercept, math.log(max(float(np.std(ly - intercept - slope * lx)), 0.05))


def _fit(lx: np.ndarray, ly: np.ndarray, cens: np.ndarray) -> tuple[np.ndarray, float]:
    """Maximum likelihood (intercept, slope, log scale), from the uncensored points' line."""
    exact = cens == 0
    slope, intercept = np.polyfit(lx[exact], ly[exact], 1)
    spread = max(float(np.std(ly - intercept - slope * lx)), 0.05)
    res = minimize(
        lambda t: -_loglik(t, lx, ly, cens),
        np.array([intercept, slope, math.log(spread)]),
        method="Nelder-Mead",
        options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000},
    )
    return np.asarray(res.x), -float(res.fun)


def _profile(lx: np.ndarray, ly: np.ndarray, cens: np.ndarray, slope: float) -> float:
    """The log likelihood maximised over intercept and scale at a fixed slope."""
    res = minimize(
        lambda t: -_loglik(np.array([t[0], slope, t[1]]), lx, ly, cens),
        np.array(_start(lx, ly, slope)),
        method="Nelder-Mead",
        options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 2000},
    )
    return -float(res.fun)


#: Slopes the profile interval is read on: beta_p +- 3 in steps of 0.01.
_OFFSETS = np.linspace(-3.0, 3.0, 601)


def fit_size_law(estimates: Sequence[Optimum], confidence: float) -> SizeLaw | None:
    """beta_p from the estimates; None with fewer than two uncensored ones or three in all."""
    exact = [e for e in estimates if e.censored is None]
    if len(estimates) < 3 or len(exact) < 2:
        return None
    lx = np.log([e.data_size for e in estimates])
    ly = np.log([e.parameters for e in estimates])
    cens = np.array(
        [0 if e.censored is None else (1 if e.censored == "above" else -1) for e in estimates]
    )
    theta, best = _fit(lx, ly, cens)
    n = len(estimates)
    limit = n * math.log(1.0 + float(fdtri(1, n - 2, confidence)) / (n - 2))
    slope = float(theta[1])
    grid = slope + _OFFSETS
    centre = int(np.argmin(np.abs(_OFFSETS)))

    def inside(i: int) -> bool:
        return 2 * (best - _profile(lx, ly, cens, float(grid[i]))) <= limit

    # Walk out from the estimate: each grid point costs an optimisation, and only the
    # contiguous run around the estimate is the interval.
    left = right = centre
    while left > 0 and inside(left - 1):
        left -= 1
    while right < len(grid) - 1 and inside(right + 1):
        right += 1
    # A run that reaches the end of the searched slopes never crossed the threshold: the
    # data (often censored points alone on one side) do not bound beta_p there.
    interval = [
        None if left == 0 else float(min(grid[left], slope)),
        None if right == len(grid) - 1 else float(max(grid[right], slope)),
    ]
    return SizeLaw(float(math.exp(theta[0])), float(theta[1]), interval, float(math.exp(theta[2])))


def edge_warnings(estimates: Sequence[Optimum]) -> list[str]:
    """Say when the grid of model sizes stops short of the optimum at an end of the curve."""
    out = []
    tail = 0
    while tail < len(estimates) and estimates[-1 - tail].censored == "above":
        tail += 1
    if tail:
        start = estimates[len(estimates) - tail].data_size
        out.append(f"the largest model size is best from m = {start:g} on: add larger model sizes")
    head = 0
    while head < len(estimates) and estimates[head].censored == "below":
        head += 1
    if head:
        end = estimates[head - 1].data_size
        out.append(
            f"the smallest model size is best up to m = {end:g}: its optimum may lie below "
            "the grid; add smaller model sizes where the model allows them"
        )
    return out


def grid_size_law(best: Sequence[BestPoint]) -> tuple[float, float, float] | None:
    """(alpha, beta, R^2 in log space) through the best grid point per data size; None
    with fewer than three data sizes whose best model has a parameter count."""
    sized = [b for b in best if b.size is not None]
    if len(sized) < 3:
        return None
    return fit_log_linear(
        np.array([b.data_size for b in sized]),
        np.array([float(b.size) for b in sized]),  # type: ignore[arg-type]
    )


def _unit_warning(points: Sequence[Point]) -> list[str]:
    if any(p.model_size is not None and p.parameters is None for p in points):
        return [
            "no parameter counts (column parameters): beta_p is fitted to the size knob "
            "(model_size), not to parameters; for a width knob the parameter exponent is "
            "about twice as large"
        ]
    return []


#: Fewest distinct best grid sizes for a law through them to say anything.
MIN_DISTINCT_GRID_SIZES = 3


def model_size_law(
    points: Sequence[Point],
    best: Sequence[BestPoint],
    grid_interval: Interval | None,
    confidence: float,
    warnings: list[str],
) -> ModelSizeLaw | None:
    """beta_p through the continuous optima (censored at the grid's edges); the law through
    the best grid points, with ``grid_interval`` (from the bootstrap), when there are too
    few optima but the best grid point changes often enough; else null with a reason.
    None without model sizes."""
    grid_law = grid_size_law(best)
    if grid_law is None:
        return None
    unit_warning = _unit_warning(points)
    warnings.extend(unit_warning)
    estimates = optima(points)
    edges = edge_warnings(estimates)
    warnings.extend(edges)
    law = fit_size_law(estimates, confidence)
    distinct = len({b.size for b in best if b.size is not None})
    parts: dict[str, object]
    if law is not None:
        parts = {
            "method": "continuous optimum (censored fit)",
            "alpha": law.alpha,
            "beta": law.beta,
            "beta_interval": law.interval,
        }
    elif distinct >= MIN_DISTINCT_GRID_SIZES:
        warnings.append(
            "model-size law through the best grid points (a step function): fewer than "
            "2 data sizes have their best model inside the grid of model sizes"
        )
        parts = {
            "method": "best grid point",
            "alpha": grid_law[0],
            "beta": grid_law[1],
            "beta_interval": grid_interval,
        }
    else:
        reason = (
            "beta_p is not measurable: the best model is one of only "
            f"{plural(distinct, 'grid size')} at every data size, and fewer than 2 data "
            "sizes have their best model inside the grid"
        )
        reason += f" ({edges[0]})" if edges else " (add model sizes between and around them)"
        warnings.append(reason)
        # Explicit nulls: the JSON contract always has beta and its interval.
        parts = {
            "method": "not measurable",
            "reason": reason,
            "alpha": None,
            "beta": None,
            "beta_interval": None,
        }
    return ModelSizeLaw.model_validate(
        {
            **parts,
            "unit": "model_size" if unit_warning else "parameters",
            "grid_beta": grid_law[1],
            "r2_log": grid_law[2],
            "estimates": [
                SizeEstimate(
                    data_size=number(e.data_size),
                    parameters=e.parameters,
                    censored=e.censored,
                    grid_best=number(e.grid_best),
                )
                for e in estimates
            ],
        }
    )
