"""The learning curve fitted robustly: one bad trial may not decide the exponent.

Least squares on log loss lets a single point 25% off move beta_g severalfold (an
8-point curve with beta_g = -0.39 gave -0.06 with one raised point). Here the fit is
iteratively re-weighted with Huber weights on the log residuals: a residual within
``HUBER`` robust standard deviations counts fully, a larger one counts as if it were
that far. The scale is the median absolute residual (a robust standard deviation),
never below ``MIN_SCALE``: trial-to-trial variation of a trained model is rarely
below 2%, and a nearly exact curve must not turn its smallest wiggles into outliers.
With fewer than ``MIN_DOF`` residual degrees of freedom nothing can be told apart
from the curve, and the fit is plain least squares.

Huber weights bound a bad point's pull but do not remove it, and at the ends of a
curve with a constant (3 parameters on 8 points) the curve bends to meet it. So
outliers are first found one at a time by deletion (`find_outliers`): an inner point
whose loss lies more than ``OUTLIER_Z`` robust standard deviations from the curve
fitted to the other points is left out of the learning-curve fit and reported. The
first and last points are never outliers: off the curve of the others they cannot be
told from a bend (the small-data plateau, the irreducible error, or a plateau that has
just begun to fall), which the power-law region search (`region.py`) decides about.
"""

from __future__ import annotations

import math

import numpy as np

from scalingstudy.fitting.curve import Array, CurveFit, fit_power_law

HUBER = 1.5
OUTLIER_Z = 4.0
MIN_SCALE = 0.02
MIN_DOF = 3
_ITERATIONS = 8


#: At most one outlier per this many points: more than that is the curve's shape.
POINTS_PER_OUTLIER = 6


def _without(m: Array, y: Array, i: int, with_gamma: bool) -> tuple[float, float]:
    """Curve fitted without point i: (the others' sum of squared log residuals, point i's
    log residual in robust SDs of the others)."""
    keep = np.arange(len(m)) != i
    fit = fit_power_law(m[keep], y[keep], with_gamma=with_gamma, polish=False)
    with np.errstate(all="ignore"):
        others = np.log(y[keep]) - np.log(np.maximum(fit.law(m[keep]), 1e-300))
        own = float(np.log(y[i]) - np.log(max(float(fit.law(m[i])), 1e-300)))
    return float(others @ others), own / robust_scale(others, fit.k)


def find_outliers(m: Array, y: Array, *, with_gamma: bool) -> list[tuple[int, float]]:
    """(index, robust z) of each outlier, worst first; m ascending.

    The candidate is the point whose removal leaves the best-fitting curve (deletion
    diagnostics): a bad point next to good ones makes a good neighbour look off too when
    the neighbour is left out, but only removing the bad point itself lets the rest fit.
    """
    idx = np.arange(len(m))
    found: list[tuple[int, float]] = []
    while len(found) < len(m) // POINTS_PER_OUTLIER:
        gamma = with_gamma and len(idx) - 1 >= 6
        if len(idx) - 1 - (3 if gamma else 2) < MIN_DOF:
            break
        inner = range(1, len(idx) - 1)
        trials = {j: _without(m[idx], y[idx], j, gamma) for j in inner}
        j = min(inner, key=lambda i: np.nan_to_num(trials[i][0], nan=np.inf))
        z = float(np.nan_to_num(trials[j][1]))
        if abs(z) <= OUTLIER_Z:
            break
        found.append((int(idx[j]), z))
        idx = np.delete(idx, j)
    return found


def robust_scale(residuals: Array, k: int) -> float:
    """Median absolute log residual as a standard deviation, corrected for k fitted
    parameters, never below MIN_SCALE."""
    n = len(residuals)
    mad = 1.4826 * float(np.median(np.abs(residuals))) * math.sqrt(n / max(n - k, 1))
    return max(mad, MIN_SCALE)


def fit_robust(m: Array, y: Array, *, with_gamma: bool, polish: bool = True) -> CurveFit:
    """Huber-weighted fit of ``alpha * m**beta (+ gamma)`` in log space."""
    fit = fit_power_law(m, y, with_gamma=with_gamma, polish=polish)
    if fit.dof < MIN_DOF:
        return fit
    log_y = np.log(y)
    weights = np.ones(len(m))
    for _ in range(_ITERATIONS):
        with np.errstate(all="ignore"):
            residuals = log_y - np.log(np.maximum(fit.law(m), 1e-300))
        z = residuals / robust_scale(residuals, fit.k)
        new = np.minimum(1.0, HUBER / np.maximum(np.abs(z), 1e-12))
        if np.allclose(new, weights, atol=1e-3):
            break
        weights = new
        fit = fit_power_law(m, y, with_gamma=with_gamma, polish=polish, weights=weights)
    if np.all(weights == 1.0):
        fit = CurveFit(fit.law, fit.sse_log, fit.n, fit.k, None)
    return fit
