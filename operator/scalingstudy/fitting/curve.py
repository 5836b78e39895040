"""Power-law fits in log space, by variable projection.

For a fixed exponent b, ``eps(m) = a * m**b + c`` is linear in (a, c), so the
fit is a one-dimensional search over b with a small (non-negative) linear
solve inside: no starting point to guess and no local minimum to fall into.
Residuals are measured in log space (relative error), where learning curves
are homoscedastic; the linear solve uses weights 1/eps**2, re-weighted with
the fitted curve, which makes it the first-order equivalent of the log fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares, minimize_scalar

Array = NDArray[np.float64]

#: Exponents searched. Hestness et al. report -0.07 to -0.35 for learning curves;
#: the range is wide enough for teacher-student tasks (about -1) with a margin.
BETA_MIN = -3.0
BETA_MAX = -1e-4
_LOG_MAX = math.log(float(np.finfo(float).max))
BETA_GRID = np.concatenate(
    [-np.geomspace(-BETA_MIN, 0.02, 120), np.linspace(-0.0199, BETA_MAX, 20)]
)


@dataclass(frozen=True)
class PowerLaw:
    """``alpha * m**beta + gamma``; gamma is 0 for the pure power law."""

    alpha: float
    beta: float
    gamma: float

    def __call__(self, m: Array | float) -> Array:
        return np.asarray(self.alpha * np.power(np.asarray(m, dtype=float), self.beta) + self.gamma)

    def log(self, m: Array) -> Array:
        """log L(m) computed in logs: the slope of a curve that rises steeply (reported as
        it is) overflows alpha * m**beta where the logarithm stays finite."""
        with np.errstate(divide="ignore"):
            power = np.log(self.alpha) + self.beta * np.log(np.asarray(m, dtype=float))
            return np.asarray(np.logaddexp(power, np.log(self.gamma)) if self.gamma > 0 else power)

    def data_for(self, loss: float) -> float | None:
        """Data size at which the curve reaches ``loss``; None when it never does."""
        if loss <= self.gamma or self.alpha <= 0 or self.beta >= 0:
            return None
        # In logs: a nearly flat curve (beta near 0) reaches a low target only at a data
        # size no float holds; that is "never" too, not an overflow.
        ratio = (loss - self.gamma) / self.alpha
        if not ratio > 0:  # an infinite alpha (a degenerate bootstrap law) never gets there
            return None
        log_m = math.log(ratio) / self.beta
        return math.exp(log_m) if log_m < _LOG_MAX else None

    def value(self, m: float) -> float | None:
        """The curve at one data size, computed in logs; None where no float holds it (a
        steep rising curve far past its data)."""
        with np.errstate(all="ignore"):
            log_value = float(self.log(np.array([m]))[0])
        return math.exp(log_value) if log_value < _LOG_MAX else None


@dataclass(frozen=True)
class CurveFit:
    law: PowerLaw
    sse_log: float  # weighted when weights are given
    n: int
    k: int  # free parameters
    #: Per-point weights of a robust fit (None: every point counts fully).
    weights: Array | None = None

    @property
    def dof(self) -> int:
        """Residual degrees of freedom: 0 or less means the points fix the curve exactly
        and say nothing about its uncertainty."""
        return self.n - self.k

    @property
    def aicc(self) -> float:
        n, k = self.n, self.k
        if n - k - 1 <= 0:
            return float("inf")
        sse = max(self.sse_log, 1e-300 * n)
        return float(n * np.log(sse / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1))


def _sse_log(y_log: Array, f: Array, weights: Array) -> Array:
    """Weighted sum of squared log residuals along the last axis; inf where the curve is
    not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = y_log - np.log(f)
    sse = np.sum(weights * r * r, axis=-1)
    return np.where(np.all(f > 0, axis=-1), sse, np.inf)


def _solve_alpha_gamma(x: Array, y: Array, w: Array) -> tuple[Array, Array]:
    """Weighted least squares of y ~ a*x + c with a >= 0, c >= 0, batched over rows of x.

    ``y`` is one curve (n,), shared by every row; ``w`` is (n,) or per row (G, n). The
    sums are matrix-vector products: this runs once per bootstrap replicate and exponent.
    """
    if w.ndim == 1:
        wy = w * y
        sw = np.full(x.shape[0], w.sum())
        sy = np.full(x.shape[0], wy.sum())
        sx = x @ w
        sxx = (x * x) @ w
        sxy = x @ wy
    else:
        wx = w * x
        sw = w.sum(-1)
        sy = w @ y
        sx = wx.sum(-1)
        sxx = np.einsum("ij,ij->i", wx, x)
        sxy = wx @ y
    det = sw * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (sw * sxy - sx * sy) / det
        c = (sxx * sy - sx * sxy) / det
        a_only = sxy / sxx  # c clipped to 0
    bad = ~np.isfinite(a) | ~np.isfinite(c) | (c < 0)
    a = np.where(bad, a_only, a)
    c = np.where(bad, 0.0, c)
    a = np.where(np.isnan(a), 0.0, np.clip(a, 0.0, None))
    return a, c


def profile(
    m: Array, y: Array, betas: Array, *, with_gamma: bool, weights: Array | None = None
) -> tuple[Array, Array, Array]:
    """For each exponent: the best (alpha, gamma) and the log-space error (variable projection).

    ``weights`` (per point, default 1) scale each squared log residual: the robust fit
    (`fit_robust`) down-weights points far off the curve this way.

    Extreme inputs (1e300) overflow on the way; such exponents get an infinite error
    and are never chosen, so the floating-point warnings carry no information.
    """
    with np.errstate(all="ignore"):
        return _profile(m, y, betas, with_gamma=with_gamma, weights=weights)


def _profile(
    m: Array, y: Array, betas: Array, *, with_gamma: bool, weights: Array | None
) -> tuple[Array, Array, Array]:
    x = np.power(m[None, :], betas[:, None])  # (G, n)
    pw = np.ones_like(y) if weights is None else weights
    if with_gamma:
        a, c = _solve_alpha_gamma(x, y, pw / (y * y))
        for _ in range(2):  # re-weight by the fitted curve: approaches the log-space optimum
            f = a[:, None] * x + c[:, None]
            w = np.where(f > 0, 1.0 / np.maximum(f, 1e-300) ** 2, 1.0 / (y * y))
            a, c = _solve_alpha_gamma(x, y, pw * w)
    else:
        # Pure power law: log a is the (weighted) mean log residual of log y - b log m.
        log_a = (np.log(y)[None, :] - np.log(x)) @ pw / pw.sum()
        a, c = np.exp(log_a), np.zeros_like(log_a)
    f = a[:, None] * x + c[:, None]
    return a, c, _sse_log(np.log(y), f, pw)


def local_grid(beta: float, half_width: float) -> Array:
    """The part of the exponent grid near ``beta``: bootstrap replicates search there
    first (a third of the work) and widen to the whole grid when they hit its edge."""
    near = BETA_GRID[np.abs(BETA_GRID - beta) <= half_width]
    return near if near.size >= 5 else BETA_GRID


def fit_power_law(
    m: Array,
    y: Array,
    *,
    with_gamma: bool,
    polish: bool = True,
    grid: Array = BETA_GRID,
    weights: Array | None = None,
) -> CurveFit:
    """Fit ``alpha * m**beta (+ gamma)`` to positive points in log space."""
    m = np.asarray(m, dtype=float)
    y = np.asarray(y, dtype=float)
    _, _, sse = profile(m, y, grid, with_gamma=with_gamma, weights=weights)
    i = int(np.argmin(sse))
    if grid is not BETA_GRID and (i == 0 or i == len(grid) - 1):
        return fit_power_law(m, y, with_gamma=with_gamma, polish=polish, weights=weights)
    lo = grid[max(i - 1, 0)]
    hi = grid[min(i + 1, len(grid) - 1)]

    def at(betas: Array) -> tuple[Array, Array, Array]:
        return profile(m, y, betas, with_gamma=with_gamma, weights=weights)

    def objective(beta: float) -> float:
        return float(at(np.array([beta]))[2][0])

    best_beta, best_sse = float(grid[i]), float(sse[i])
    if not polish and 0 < i < len(grid) - 1 and np.all(np.isfinite(sse[i - 1 : i + 2])):
        # Bootstrap replicates: the vertex of the parabola through the grid minimum and
        # its neighbours is accurate enough, and 20x cheaper than a scalar search.
        best_beta = _vertex(grid[i - 1 : i + 2], sse[i - 1 : i + 2], best_beta)
        a1, c1, s1 = at(np.array([best_beta]))
        if s1[0] <= best_sse:
            return CurveFit(
                PowerLaw(float(a1[0]), best_beta, float(c1[0])),
                float(s1[0]),
                len(m),
                3 if with_gamma else 2,
                weights,
            )
        best_beta = float(grid[i])
    elif hi > lo:
        res = minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
        if res.fun < best_sse:
            best_beta, best_sse = float(res.x), float(res.fun)
    a1, c1, _ = at(np.array([best_beta]))
    law = PowerLaw(float(a1[0]), best_beta, float(c1[0]))
    if polish and with_gamma and law.alpha > 0:
        law, best_sse = _polish(m, y, law, best_sse, weights)
    return CurveFit(law, best_sse, len(m), 3 if with_gamma else 2, weights)


def _vertex(x: Array, f: Array, fallback: float) -> float:
    """Minimum of the parabola through three points; the fallback when it is not convex."""
    d1, d2 = (f[1] - f[0]) / (x[1] - x[0]), (f[2] - f[1]) / (x[2] - x[1])
    curvature = (d2 - d1) / (x[2] - x[0])
    if curvature <= 0:
        return fallback
    vertex = 0.5 * (x[0] + x[1]) - d1 / (2 * curvature)
    return float(np.clip(vertex, x[0], x[2]))


def _polish(
    m: Array, y: Array, law: PowerLaw, sse: float, weights: Array | None
) -> tuple[PowerLaw, float]:
    """Exact log-space least squares from the profile's answer (it is already close)."""
    log_y = np.log(y)
    scale = float(np.min(y))
    root_w = np.ones_like(y) if weights is None else np.sqrt(weights)

    def residuals(p: Array) -> Array:
        f = np.exp(p[0]) * np.power(m, p[1]) + p[2] * scale
        return np.asarray(root_w * (log_y - np.log(np.maximum(f, 1e-300))))

    start = np.array([np.log(law.alpha), law.beta, law.gamma / scale])
    try:
        res = least_squares(
            residuals,
            start,
            bounds=([-np.inf, BETA_MIN, 0.0], [np.inf, BETA_MAX, np.inf]),
            method="trf",
            x_scale="jac",
        )
    except ValueError:
        return law, sse
    new_sse = float(2 * res.cost)
    if res.success and new_sse < sse:
        return PowerLaw(float(np.exp(res.x[0])), float(res.x[1]), float(res.x[2] * scale)), new_sse
    return law, sse


PROFILE_GRID = np.linspace(BETA_MIN, BETA_MAX, 3000)


def profile_interval(
    m: Array, y: Array, fit: CurveFit, confidence: float
) -> list[float | None] | None:
    """Profile-likelihood interval of beta: every exponent whose best (alpha, gamma) fits the
    log data not significantly worse than the optimum (F test, n - k degrees of freedom).

    With the 5 to 10 points of a learning curve a bootstrap alone is too narrow (it
    resamples from residuals that the fit already shrank, and beta and gamma trade off
    along a long valley); profiling alpha and gamma out follows that valley exactly.
    """
    from scipy.special import fdtri

    dof = fit.dof
    if dof < 1:
        return None
    # Unweighted: the robust fit's down-weighted residuals would shrink the threshold and
    # with it the interval (beta coverage fell from about 0.9 to 0.7 on 2%-noise curves).
    _, _, sse = profile(m, y, PROFILE_GRID, with_gamma=fit.k == 3)
    best = (
        float(np.nanmin(sse))
        if fit.weights is not None
        else min(fit.sse_log, float(np.nanmin(sse)))
    )
    limit = best * (1.0 + float(fdtri(1, dof, confidence)) / dof)
    inside = np.nan_to_num(sse, nan=np.inf) <= limit
    centre = int(np.argmin(np.abs(PROFILE_GRID - fit.law.beta)))
    if not inside[centre]:
        centre = int(np.nanargmin(sse))
    left = right = centre
    while left > 0 and inside[left - 1]:
        left -= 1
    while right < len(PROFILE_GRID) - 1 and inside[right + 1]:
        right += 1
    # A run that reaches the end of the searched exponents never crossed the threshold:
    # the data do not bound beta on that side, and the grid's end is no confidence limit.
    return [
        None if left == 0 else float(min(PROFILE_GRID[left], fit.law.beta)),
        None if right == len(PROFILE_GRID) - 1 else float(max(PROFILE_GRID[right], fit.law.beta)),
    ]


def open_at_bounds(interval: list[float] | None) -> list[float | None] | None:
    """A bootstrap interval of beta whose end sits at the searched range's end
    (BETA_MIN or BETA_MAX) is not bounded there: that end becomes None."""
    if interval is None:
        return None
    low, high = interval
    return [
        None if low <= BETA_MIN + 1e-6 else low,
        None if high >= BETA_MAX - 1e-9 else high,
    ]


def fit_log_linear(x: Array, y: Array) -> tuple[float, float, float]:
    """``y = alpha * x**beta`` by least squares on logs; returns (alpha, beta, r2)."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if np.ptp(lx) == 0:
        return float(np.exp(ly.mean())), 0.0, 0.0
    # Closed-form simple regression (np.polyfit's lstsq costs more in bootstrap loops).
    dx = lx - lx.mean()
    beta = float(dx @ (ly - ly.mean()) / (dx @ dx))
    intercept = float(ly.mean() - beta * lx.mean())
    pred = intercept + beta * lx
    sst = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(np.sum((ly - pred) ** 2)) / sst if sst > 0 else 1.0
    return float(np.exp(intercept)), float(beta), r2


def quantile_interval(values: Sequence[float], confidence: float) -> list[float] | None:
    """The central ``confidence`` range of finite values (None with fewer than two)."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(finite) < 2:
        return None
    tail = (1.0 - confidence) / 2.0
    return [float(np.quantile(finite, tail)), float(np.quantile(finite, 1.0 - tail))]
