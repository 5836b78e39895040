"""Finding the power-law region of a learning curve (Hestness et al. 2017, Figure 1).

A measured curve may start in the small-data region, where the error stays
near the best-guess level and falls more slowly than the power law, and may
end in the irreducible-error region, where it flattens. Points from either
region bias the exponent. The test is predictive: an end point is dropped when
the power law fitted to the other points misses it, on the side its region
bends to, by more than ``THRESHOLD`` times the residual scale of that fit. It
stops when nothing is missed or when too few points would be left, so a
curve that is a power law throughout keeps every point.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scalingstudy.fitting.curve import Array, CurveFit

THRESHOLD = 3.0
#: Relative noise assumed at least present (trial-to-trial variation of a trained
#: model is rarely below 2%); keeps a nearly exact fit from dropping points for
#: tiny misses.
MIN_SIGMA = 0.02
MIN_POINTS = 6  # a constant term needs at least 6 points to be told apart (AICc)

Fitter = Callable[[Array, Array], CurveFit]


def _sigma(fit: CurveFit) -> float:
    dof = fit.n - fit.k
    if dof <= 0:
        return MIN_SIGMA
    return max(float(np.sqrt(fit.sse_log / dof)), MIN_SIGMA)


def _misses(fit: CurveFit, m: float, y: float) -> float:
    """Log residual of a point against a fit it was not part of, in units of sigma."""
    return float((np.log(y) - np.log(fit.law(m))) / _sigma(fit))


def _grow_left(m: Array, y: Array, fit: Fitter, hi: int, minimum: int) -> int:
    """Outward pass: from the largest sizes, extend towards small ones while each next
    point lies on the window's power law. It finds a long flat start that masks itself
    in the inward pass (the flat points drag the fit towards them)."""
    lo = hi - minimum
    while lo > 0:
        window = fit(m[lo:hi], y[lo:hi])
        if _misses(window, m[lo - 1], y[lo - 1]) < -THRESHOLD:
            break
        lo -= 1
    return lo


def find_region(m: Array, y: Array, fit: Fitter) -> tuple[int, int]:
    """The widest window [lo, hi) whose end points both lie on the window's power law."""
    n = len(m)
    lo, hi = 0, n
    minimum = max(MIN_POINTS, (n + 1) // 2)
    while hi - lo > minimum:
        without_first = fit(m[lo + 1 : hi], y[lo + 1 : hi])
        # Small-data region: the observed loss lies below the power law's backward
        # extrapolation (the curve is flatter there).
        if _misses(without_first, m[lo], y[lo]) < -THRESHOLD:
            lo += 1
            continue
        without_last = fit(m[lo : hi - 1], y[lo : hi - 1])
        # Irreducible region: the observed loss lies above the forward extrapolation.
        if _misses(without_last, m[hi - 1], y[hi - 1]) > THRESHOLD:
            hi -= 1
            continue
        break
    if hi - lo > minimum:
        grown = _grow_left(m, y, fit, hi, minimum)
        # Trust the outward pass only when the inward window is clearly not one power
        # law: its scatter is more than three times the scatter of the outward window.
        if grown > lo and _sigma(fit(m[lo:hi], y[lo:hi])) > 3 * _sigma(
            fit(m[grown:hi], y[grown:hi])
        ):
            lo = grown
    return lo, hi
