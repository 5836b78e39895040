"""Curve forms that predict beyond the data, each fitted by least squares on log loss.

The exponent beta_g is the paper's quantity and stays with the power law of
`curve.py`; these forms only serve predictions, where the question is which shape
keeps holding past the largest fitted size:

- ``power-law``: ``a * x**c`` (M1 of Alabdulmohsin, Neyshabur and Zhai 2022).
- ``power-law-plus-constant``: ``a * x**c + e_inf`` (M2; Hestness et al. 2017).
- ``m4``: ``(e - e_inf) / (e_0 - e)**alpha = b * x**c`` (M4 of the same 2022 paper).
  It bends from a plateau near ``e_0`` at small x through a power law into the
  irreducible error ``e_inf``; alpha = 0 is M2. The loss is implicit in x: for
  given parameters the left side increases strictly in e on (e_inf, e_0), so each
  prediction is the one root of a monotone equation, solved by safeguarded Newton
  steps in the logit of the position between e_inf and e_0. The Jacobian for the
  least-squares solver follows from the implicit-function theorem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from scalingstudy.fitting.curve import Array, fit_log_linear, fit_power_law


@dataclass(frozen=True)
class Fitted:
    """One form fitted to one curve: predicts the loss at any data size."""

    form: str
    params: tuple[float, ...]
    k: int  # free parameters
    predict: Callable[[Array], Array]

    def __call__(self, x: Array | float) -> Array:
        return self.predict(np.atleast_1d(np.asarray(x, dtype=float)))


@dataclass(frozen=True)
class Form:
    name: str
    #: Fewest points a fit is attempted on (more than k, so residuals say something).
    min_points: int
    fit: Callable[[Array, Array, tuple[float, ...] | None], Fitted | None]
    #: Whether the form models the small-data plateau; the others are fitted from the
    #: power-law region on (points of the plateau would bend them the wrong way).
    plateau: bool = False


def _fit_m1(x: Array, y: Array, _: tuple[float, ...] | None = None) -> Fitted:
    with np.errstate(over="ignore"):  # extreme inputs (1e300) overflow a; never chosen then
        a, c, _r2 = fit_log_linear(x, y)
    return Fitted("power-law", (a, c), 2, lambda q: a * np.power(q, c))


def _fit_last(x: Array, y: Array, _: tuple[float, ...] | None = None) -> Fitted:
    """The naive forecast: the loss stays where it was last measured. On curves that have
    flattened or turn up (real ones do) no fitted form beats it, and in the mixture it
    keeps an interval from promising a further fall the data do not show."""
    level = float(y[-1])
    return Fitted("last-value", (level,), 1, lambda q: np.full(q.shape, level))


def _fit_m2(x: Array, y: Array, _: tuple[float, ...] | None = None) -> Fitted:
    law = fit_power_law(x, y, with_gamma=True).law
    return Fitted("power-law-plus-constant", (law.alpha, law.beta, law.gamma), 3, law)


# --- M4 ---------------------------------------------------------------------------

_NEWTON_STEPS = 40
_U_BOUND = 60.0  # logit range searched: positions 1e-26 .. 1 - 1e-26 of (e_inf, e_0)


def _softplus(u: Array) -> Array:
    return np.asarray(np.logaddexp(0.0, u))


def _m4_position(rhs: Array, alpha: float) -> Array:
    """Solve ``log t - alpha * log(1 - t) = rhs`` for t in (0, 1); returns logit(t).

    The left side is strictly increasing in u = logit(t) (derivative
    sigmoid(-u) + alpha * sigmoid(u) > 0), so a Newton step that leaves the
    bracket is replaced by bisection and the iteration always converges.
    """
    lo = np.full_like(rhs, -_U_BOUND)
    hi = np.full_like(rhs, _U_BOUND)
    # The two asymptotes: log t ~ u for t -> 0, alpha * u for t -> 1.
    u = np.clip(np.where(rhs < 0, rhs, rhs / max(alpha, 1.0)), -_U_BOUND, _U_BOUND)
    for _ in range(_NEWTON_STEPS):
        h = -_softplus(-u) + alpha * _softplus(u) - rhs
        lo = np.where(h < 0, u, lo)
        hi = np.where(h >= 0, u, hi)
        s = 1.0 / (1.0 + np.exp(-u))
        slope = (1.0 - s) + alpha * s
        step = u - h / np.maximum(slope, 1e-300)
        inside = (step > lo) & (step < hi)
        new = np.where(inside, step, 0.5 * (lo + hi))
        if float(np.max(np.abs(new - u))) < 1e-8:
            return np.asarray(new)
        u = new
    return u


@dataclass(frozen=True)
class _M4:
    """M4 parameters in the solver's coordinates, scaled by the fitted curve's range."""

    e_inf: float
    e_0: float
    alpha: float
    log_b: float
    c: float
    log_x0: float  # x is measured as log(x) - log_x0, for conditioning

    def loss(self, x: Array) -> Array:
        span = self.e_0 - self.e_inf
        rhs = self.log_b + self.c * (np.log(x) - self.log_x0) - (1.0 - self.alpha) * np.log(span)
        u = _m4_position(np.asarray(rhs, dtype=float), self.alpha)
        t = 1.0 / (1.0 + np.exp(-u))
        return np.asarray(self.e_inf + span * t)


def _m4_from(p: Array, y_min: float, y_max: float, log_x0: float) -> _M4:
    return _M4(
        e_inf=float(p[0] * y_min),
        e_0=float(y_max * (1.0 + np.exp(p[1]))),
        alpha=float(p[2]),
        log_b=float(p[3]),
        c=float(p[4]),
        log_x0=log_x0,
    )


_GRID_Q = np.array([0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.98])
_GRID_RATIO = np.geomspace(0.01, 100.0, 9)  # e_0 / max(y) - 1
_GRID_ALPHA = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])


def _m4_starts(lx: Array, y: Array, count: int) -> list[Array]:
    """Starting points from a grid over (e_inf, e_0, alpha). For those fixed, the form is
    linear in log x: ``z = log(e - e_inf) - alpha*log(e_0 - e) = log b + c*log x``, and
    a z residual divided by dz/dlog e is, to first order, the log-loss residual; so a
    weighted linear regression scores every grid point at once."""
    q, ratio, alpha = (g.ravel() for g in np.meshgrid(_GRID_Q, _GRID_RATIO, _GRID_ALPHA))
    e_inf = (q * float(y.min()))[:, None]
    e_0 = (float(y.max()) * (1.0 + ratio))[:, None]
    a = alpha[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(y - e_inf) - a * np.log(e_0 - y)
        slope_z = y / (y - e_inf) + a * y / (e_0 - y)
    w = 1.0 / slope_z**2
    sw, sx, sxx = w.sum(1), w @ lx, w @ (lx * lx)
    sz, sxz = (w * z).sum(1), (w * z) @ lx
    det = sw * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (sw * sxz - sx * sz) / det
        log_b = (sz - c * sx) / sw
        sse = np.sum(w * (z - log_b[:, None] - c[:, None] * lx) ** 2, axis=1)
    sse = np.where(np.isfinite(sse) & (c < 0), sse, np.inf)
    order = np.argsort(sse)[:count]
    return [
        np.array([q[i], np.log(ratio[i]), alpha[i], log_b[i], c[i]])
        for i in order
        if np.isfinite(sse[i])
    ]


#: Trust-region steps per start: the optimum lies in a long flat valley (e_0 and
#: alpha trade off against b), where predictions change little long before the
#: solver would declare convergence.
_MAX_NFEV = 40
_Q_MAX = 1.0 - 1e-6  # e_inf below the smallest observed loss
_LOWER = np.array([0.0, -12.0, 0.0, -np.inf, -10.0])
_UPPER = np.array([_Q_MAX, 12.0, 20.0, np.inf, -1e-6])


def trend_guard(fitted: Fitted, x: Array, y: Array) -> Fitted:
    """The form, held beyond the last fitted size between the curve's trend and its current
    level: at or above the power law through the later half of the points, continued with
    the gentler of its slope and the whole curve's (at most 0), and at or below the larger
    of the last loss and that power law's value there.

    Learning curves bend towards a floor, so a form that extrapolates a fall steeper than
    the data's own recent one (M4 fitted in the middle of the plateau's bend, a steep
    power law over a sliver of sizes) is extrapolating an acceleration no point shows;
    unguarded, such fits predicted losses five orders of magnitude below the truth on
    real curves."""
    tail = max(3, (len(x) + 1) // 2)
    if len(x) < 3:
        return fitted
    a, slope, _r2 = fit_log_linear(x[-tail:], y[-tail:])
    # The gentler of the recent and the whole curve's slope: a curve that has just begun
    # to fall steeply (a plateau's end) has not shown that it keeps falling that fast.
    whole = fit_log_linear(x, y)[1]
    slope = min(max(slope, whole), 0.0)
    x_last = float(x[-1])
    # From the last loss or the trend's value there, whichever is lower: the guard only
    # stops a fall, it never lifts a prediction above what was measured.
    tail_level = float(a * x_last**slope)
    anchor = min(tail_level, float(y[-1]))
    # Nor may a form that fits the end of the curve badly (a power law through a plateau
    # and its fall) predict more data to make things worse than they are now.
    ceiling = max(tail_level, float(y[-1]))

    def guarded(q: Array) -> Array:
        own = fitted.predict(q)
        beyond = q > x_last
        trend = anchor * np.power(np.maximum(q, x_last) / x_last, slope)
        held = np.minimum(np.maximum(own, trend), ceiling)
        return np.asarray(np.where(beyond, held, own))

    return Fitted(fitted.form, fitted.params, fitted.k, guarded)


def _fit_m4(x: Array, y: Array, warm: tuple[float, ...] | None = None) -> Fitted | None:
    lx_all = np.log(x)
    log_x0 = float(lx_all.min())
    lx = lx_all - log_x0
    y_min, y_max = float(y.min()), float(y.max())
    log_y = np.log(y)

    cache: dict[bytes, tuple[_M4, Array]] = {}

    def evaluate(p: Array) -> tuple[_M4, Array]:
        """The solver asks for residuals, then the Jacobian, at the same point."""
        key = p.tobytes()
        if key not in cache:
            cache.clear()
            law = _m4_from(p, y_min, y_max, log_x0)
            cache[key] = (law, law.loss(x))
        return cache[key]

    def residuals(p: Array) -> Array:
        return np.asarray(np.log(evaluate(p)[1]) - log_y)

    def jacobian(p: Array) -> Array:
        m, e = evaluate(p)
        below = np.maximum(e - m.e_inf, 1e-300)
        above = np.maximum(m.e_0 - e, 1e-300)
        g_e = 1.0 / below + m.alpha / above
        # dG/dtheta for G = log(e - e_inf) - alpha*log(e_0 - e) - log_b - c*lx = 0
        g_theta = np.stack(
            [
                -y_min / below,
                -m.alpha / above * y_max * np.exp(p[1]),
                -np.log(above),
                -np.ones_like(e),
                -lx,
            ],
            axis=1,
        )
        return np.asarray(-g_theta / (g_e * e)[:, None])

    # A warm start (the previous backtest origin's answer) replaces one grid start.
    starts = _m4_starts(lx, y, 1 if warm is not None else 2)
    if warm is not None:
        starts.append(np.array(warm))
    starts = [np.clip(st, _LOWER, _UPPER) for st in starts]
    if not starts:
        return None
    # Each start is polished by a (bounded, short) trust-region run; the best wins.
    with np.errstate(all="ignore"):
        best: tuple[float, Array] | None = None
        for start in starts:
            try:
                res = least_squares(
                    residuals,
                    start,
                    jac=jacobian,
                    bounds=(_LOWER, _UPPER),
                    method="trf",
                    x_scale="jac",
                    max_nfev=_MAX_NFEV,
                )
            except ValueError:
                continue
            sse = float(np.sum(res.fun**2))
            if np.isfinite(sse) and (best is None or sse < best[0]):
                best = (sse, res.x)
    if best is None:
        return None
    law = _m4_from(best[1], y_min, y_max, log_x0)
    return Fitted("m4", tuple(float(v) for v in best[1]), 5, law.loss)


FORMS = (
    Form("last-value", 3, _fit_last),
    Form("power-law", 3, _fit_m1),
    Form("power-law-plus-constant", 5, _fit_m2),
    Form("m4", 6, _fit_m4, plateau=True),
)
