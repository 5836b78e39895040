"""A trial's final loss forecast from its partial curve, with an uncertainty measured on
the curve itself. Pure (numpy, no I/O).

The law is ``y(s) = c + a * (s / s_last) ** -b`` in steps (a power law with a floor, the
shape of a loss curve under a constant or slowly decaying learning rate), fitted robustly
(Huber-weighted least squares, b on a fixed grid so that the fit is closed-form,
vectorised and deterministic). Its uncertainty at the budget adds three parts:

- the evaluation noise: the spread (median absolute deviation) of the residuals, since
  the final is itself one noisy evaluation;
- the backtest: the same law fitted on the first half of the points predicts the last
  one; its miss, scaled by the ratio of the horizons (in log-steps) still to go and gone
  in the backtest, is the extrapolation error of this curve;
- the slope: a share of the fall the curve's current slope would give if it went on in a
  straight line to the budget, because a schedule that anneals steepens the curve's end,
  which no law fitted before it sees: a trial still falling steeply keeps a wide
  interval (benchmarks/pruning.py: a share of the law's own remaining drop instead lost
  winners of annealed sweeps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Exponents b of the law tried (b -> 0 is a slow, almost logarithmic fall).
EXPONENTS = np.geomspace(0.05, 3.0, 28)
#: Huber's tuning constant (95% efficiency under Gaussian noise).
HUBER = 1.345
#: Share of the straight-line fall at the current slope to the budget added to the
#: uncertainty: the curve may still steepen (a learning rate that anneals to zero lowers
#: the end of the curve).
SLOPE_SHARE = 0.5
#: Points before this fraction of the last observed step are left out when enough remain
#: (warmup and the first steep fall follow no power law of steps).
SKIP_BEFORE = 0.1


@dataclass(frozen=True)
class Forecast:
    """The predicted loss at ``at_step`` and its standard uncertainty."""

    mean: float
    sigma: float
    at_step: int
    points: int
    """Finite evaluations the forecast rests on."""
    noise: float = 0.0
    """The spread of one evaluation around the law (its robust residual spread)."""
    evaluations_left: int = 0
    """Evaluations still to come at the curve's spacing of evaluations so far."""

    def lowest_lower(self, z: float) -> float:
        """A lower bound on the lowest evaluation still to come (what a trainer that
        reports its lowest evaluation reports): the bound on the curve at the budget,
        less the expected extreme of the remaining evaluations' noise, about
        sqrt(2 ln k) spreads for k of them."""
        k = max(self.evaluations_left, 2)
        return self.lower(z) - self.noise * math.sqrt(2 * math.log(k))

    def lower(self, z: float) -> float:
        return self.mean - z * self.sigma

    def upper(self, z: float) -> float:
        return self.mean + z * self.sigma


@dataclass(frozen=True)
class _Law:
    c: float
    a: float
    b: float
    scale: float
    residual_spread: float

    def value(self, step: float) -> float:
        return float(self.c + self.a * (step / self.scale) ** -self.b)


def _weighted_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[int, np.ndarray]:
    """For every exponent at once, the weighted least-squares c and a of y = c + a x^-b;
    the index of the exponent with the least weighted squared residual, and (c, a)."""
    basis = x[None, :] ** -EXPONENTS[:, None]  # (nb, n)
    sw, swy = w.sum(), (w * y).sum()
    swx = (basis * w).sum(axis=1)
    swxx = (basis * basis * w).sum(axis=1)
    swxy = (basis * (w * y)).sum(axis=1)
    det = sw * swxx - swx * swx
    safe = np.where(np.abs(det) > 1e-300, det, np.inf)
    a = (sw * swxy - swx * swy) / safe
    c = (swy - a * swx) / sw
    residual = y[None, :] - c[:, None] - a[:, None] * basis
    score = (w[None, :] * residual * residual).sum(axis=1)
    best = int(np.argmin(score))
    return best, np.array([c[best], a[best]])


def _spread(residual: np.ndarray, fitted: int) -> float:
    """Robust standard deviation of residuals (MAD), corrected for fitted parameters."""
    n = residual.size
    mad = float(np.median(np.abs(residual - np.median(residual)))) * 1.4826
    return mad * math.sqrt(n / max(n - fitted, 1))


def fit_law(steps: Sequence[float], losses: Sequence[float]) -> _Law:
    """The robust law through the points (at least 3): least squares, then three rounds
    of Huber weights, so that one wild evaluation moves it little."""
    x_raw = np.asarray(steps, dtype=float)
    y = np.asarray(losses, dtype=float)
    scale = float(x_raw[-1])
    x = x_raw / scale
    w = np.ones_like(y)
    best, (c, a) = _weighted_fit(x, y, w)
    for _ in range(3):
        residual = y - c - a * x ** -EXPONENTS[best]
        spread = max(_spread(residual, 3), 1e-12 * max(abs(float(y.mean())), 1e-12))
        w = np.minimum(1.0, HUBER * spread / np.maximum(np.abs(residual), 1e-300))
        best, (c, a) = _weighted_fit(x, y, w)
    residual = y - c - a * x ** -EXPONENTS[best]
    return _Law(float(c), float(a), float(EXPONENTS[best]), scale, _spread(residual, 3))


def _window(steps: Sequence[int], losses: Sequence[float]) -> tuple[list[int], list[float]]:
    """The points the law is fitted to: from SKIP_BEFORE of the last step on, where at
    least 5 (or all) remain."""
    cut = steps[-1] * SKIP_BEFORE
    kept = [(s, y) for s, y in zip(steps, losses, strict=True) if s >= cut]
    if len(kept) < 5:
        kept = list(zip(steps, losses, strict=True))
    return [s for s, _ in kept], [y for _, y in kept]


def _backtest_error(steps: list[int], losses: list[float], law: _Law, budget: int) -> float:
    """The law fitted on the first half of the points, predicting the last point's
    smoothed value; its miss scaled from the backtest's horizon to the budget's (both in
    log-steps)."""
    half = max(3, len(steps) // 2)
    if half >= len(steps):
        return abs(law.value(steps[0]) - law.value(budget))  # no backtest: the whole fall
    early = fit_law(steps[:half], losses[:half])
    miss = abs(early.value(steps[-1]) - law.value(steps[-1]))
    gone = math.log(steps[-1] / steps[half - 1])
    to_go = math.log(budget / steps[-1])
    return miss * (to_go / gone if gone > 0 else 1.0)


@lru_cache(maxsize=4096)
def forecast(steps: tuple[int, ...], losses: tuple[float, ...], budget: int) -> Forecast:
    """The loss at ``budget`` from the finite evaluations (step > 0, at least 3) seen so
    far; deterministic, and cached since a replay asks the same curve again."""
    xs, ys = _window(list(steps), list(losses))
    law = fit_law(xs, ys)
    horizon = max(budget, xs[-1])
    mean = law.value(horizon)
    backtest = _backtest_error(xs, ys, law, horizon)
    slope = abs(law.a * law.b) / law.scale  # |dy/ds| at the last point (scale = its step)
    straight = SLOPE_SHARE * slope * (horizon - xs[-1])
    sigma = math.hypot(law.residual_spread, backtest, straight)  # no overflow on huge losses
    spacing = (xs[-1] - xs[0]) / max(len(xs) - 1, 1) or xs[-1]
    left = math.ceil((horizon - xs[-1]) / spacing)
    return Forecast(mean, sigma, horizon, len(xs), law.residual_spread, left)
