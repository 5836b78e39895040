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
- the shape: a share of the drop the law still predicts, because a schedule that anneals
  steepens the curve's end, which no law fitted before it sees.
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
#: Share of the law's remaining predicted drop added to the uncertainty: the curve may
#: still steepen (a learning rate that anneals to zero lowers the end of the curve).
SHAPE_SHARE = 0.5
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
        return self.c + self.a * (step / self.scale) ** -self.b


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
    shape = SHAPE_SHARE * abs(law.value(xs[-1]) - mean)
    sigma = math.sqrt(law.residual_spread**2 + backtest**2 + shape**2)
    return Forecast(mean=mean, sigma=sigma, at_step=horizon, points=len(xs))
