"""Predictions beyond the data whose intervals include the error of extrapolating.

A bootstrap over the fitted points measures the noise around the curve, not how
wrong the curve's form gets past the largest fitted size; on published learning
curves its nominal 90% intervals held 20-29% of the held-out losses. The method
here measures that error on the study's own curve:

1. **Rolling-origin backtest.** For origins k (the first k data sizes fitted; the
   later half of the curve, at most ``MAX_ORIGINS`` of them spread evenly), every
   candidate form (`forms.py`: the last loss carried forward, power law, power law
   plus constant, M4), held past its last fitted size between the curve's trend and
   its current level (`forms.trend_guard`: no collapse, no rise), is fitted to
   the first k points and predicts the remaining ones. Each prediction leaves a log
   error and a *relative distance*: how far past the origin's last fitted size it
   lies, in units of the origin's own fitted log range,
   ``d = log(x / x_last) / log(x_last / x_first)``. Extrapolating one doubling past
   a curve that spans two doublings is much riskier than past one that spans ten,
   so errors are compared in these units.
2. **The form chosen by its backtest.** The prediction comes from the form with the
   smallest mean squared log error over the origins every candidate shares (each
   origin counts once). Averaging the point predictions weighted by the inverse of
   that error (Bates and Granger 1969) was tried and extrapolated the shared real
   curves worse (RMSE of log loss NMT 0.027, LM 0.00093, against 0.0145 and 0.00079
   chosen), because a form that is right only with many points (M4) is diluted by
   forms that are wrong at every size; the report keeps every form's backtest error.
   But one form alone can run away on a real curve (a fall that has just begun,
   extrapolated as a collapse), so the chosen form's prediction is held within the
   middle half (25% to 75% quantiles) of the mixture of step 3: on a clean curve the
   best form decides, a runaway is pulled back by the others. On 464 real curves
   (`benchmarks/fit_real.py`) this left no collapse and beat M4 and the last loss on
   the mean and median error of every LCDB domain.
3. **An error model per form, fitted to its backtest.** A form's backtest errors
   (every origin it was fitted at) are modelled as Student-t in log loss, one degree
   of freedom per origin (the errors of one origin are not independent), with scale
   ``sqrt(noise**2 + (growth * d)**2)``: ``noise`` is the scatter of the points
   around the form's fit (degrees of freedom corrected), ``growth`` (maximum
   likelihood) how fast the error grows with the relative distance. The scale is
   never below noise plus the parametric (bootstrap) spread at that size. It is a
   prediction interval for the loss a trial at that size would measure, noise
   included.
   The backtest can choose among near-equals by luck (on noisy synthetic curves the
   pure power law won often and then missed the floor), so the interval is not the
   chosen form's alone: it is the central range of a mixture over the forms, each
   its own prediction with its own error model (step 3 per form), weighted by the
   inverse of its backtest mean squared error. Synthetic power laws with a floor
   (5% noise, 4x past the data): coverage 0.70 from the chosen form alone, 0.90
   from the mixture; on the real curves the forms agree and the widths stay.
4. **Honest reach.** A prediction further out than any backtest reached
   (``reach``, as a ratio of data sizes) is extrapolated by the error model alone
   and says so in the report's warnings. With too few data sizes for a backtest the
   interval falls back to the bootstrap and a warning says it covers the noise only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import stdtr, stdtrit

from scalingstudy.fitting.curve import Array
from scalingstudy.fitting.forms import FORMS, Fitted, Form, trend_guard

#: Bisection steps for a quantile: the search range (120 scales) shrinks to 1e-10 of it.
_BISECTIONS = 40
#: Backtest origins per form (each is one fit per form); spread over the later half.
MAX_ORIGINS = 6
#: Smallest error growth considered (log loss per unit relative distance); keeps the
#: model from claiming that extrapolation is free when a few backtests happened to hit.
MIN_GROWTH = 1e-4


@dataclass(frozen=True)
class FormScore:
    """How one form extrapolated the study's own curve."""

    form: str
    weight: float
    backtest_rmse: float  # root mean square log error over the shared origins
    n_backtests: int


@dataclass(frozen=True)
class ErrorModel:
    """Log-space error of one form's predictions as a function of relative distance."""

    noise: float
    growth: float
    t_quantile: float
    origins: int
    n_backtests: int
    max_distance: float  # the largest relative distance a backtest covered

    def sigma(self, distance: Array | float) -> Array:
        d = np.maximum(np.asarray(distance, dtype=float), 0.0)
        return np.asarray(np.sqrt(self.noise**2 + (self.growth * d) ** 2))

    def scale(self, distance: Array, parametric: Array | float) -> Array:
        """The backtest scale, never below noise plus the parametric spread."""
        return np.asarray(
            np.sqrt(np.maximum(self.sigma(distance) ** 2, self.noise**2 + np.square(parametric)))
        )


@dataclass(frozen=True)
class Extrapolation:
    """The candidate forms fitted to the whole curve, the one chosen by the backtest, and
    each form's error model and share of the predictive mixture."""

    fits: tuple[Fitted, ...]
    chosen: int
    scores: tuple[FormScore, ...]
    #: One per fit, in the same order; empty when there was no backtest to model.
    models: tuple[ErrorModel, ...]
    mixture: tuple[float, ...]
    x_first: float
    x_last: float

    @property
    def form(self) -> str:
        return self.fits[self.chosen].form

    @property
    def errors(self) -> ErrorModel | None:
        """The chosen form's error model; None: too few data sizes to backtest."""
        return self.models[self.chosen] if self.models else None

    def loss(self, x: Array | float) -> Array:
        return self.fits[self.chosen](x)

    @property
    def reach(self) -> float | None:
        """The largest ratio (data size / largest fitted size) the backtest supports."""
        if self.errors is None:
            return None
        span = math.log(self.x_last) - math.log(self.x_first)
        return math.exp(min(self.errors.max_distance * span, 700.0))

    def distance(self, x: Array | float) -> Array:
        """Relative distance past the largest fitted size (0 inside the data)."""
        span = math.log(self.x_last) - math.log(self.x_first)
        return np.asarray(np.maximum(np.log(np.asarray(x, dtype=float) / self.x_last), 0.0) / span)

    def sigma(self, x: Array | float, parametric: Array | float = 0.0) -> Array | None:
        """Log-space standard deviation of a measured loss at x; None without a backtest."""
        if self.errors is None:
            return None
        return self.errors.scale(self.distance(x), parametric)

    def interval(
        self, x: Array, parametric: Array, confidence: float
    ) -> tuple[Array, Array] | None:
        """Central ``confidence`` interval of a measured loss at each x: quantiles of the
        mixture over forms (inverse backtest MSE weights) of each form's prediction with
        its own scaled Student-t error; the mixture keeps the interval honest when the
        backtest chose among near-equals."""
        tail = (1.0 - confidence) / 2.0
        ends = self.quantiles(x, parametric, (tail, 1.0 - tail))
        return None if ends is None else (ends[0], ends[1])

    def quantiles(
        self, x: Array, parametric: Array, levels: tuple[float, ...]
    ) -> list[Array] | None:
        """Quantiles of the mixture at each x, by bisection on its CDF in log loss (every
        level at once: one CDF evaluation per step, with scipy's ufunc, not its
        distribution objects, whose per-call overhead dominated the fit)."""
        if not self.models:
            return None
        d = self.distance(x)
        parts = [
            (share, np.log(np.maximum(fit(x), 1e-300)), model.scale(d, parametric), model.origins)
            for fit, share, model in zip(self.fits, self.mixture, self.models, strict=True)
            if share > 0
        ]
        total = sum(w for w, *_ in parts)
        target = np.asarray(levels, dtype=float)[:, None]
        lo = np.broadcast_to(
            np.min([c - 60 * s for _, c, s, _ in parts], axis=0), (len(levels), len(x))
        ).copy()
        hi = np.broadcast_to(
            np.max([c + 60 * s for _, c, s, _ in parts], axis=0), (len(levels), len(x))
        ).copy()
        for _ in range(_BISECTIONS):
            mid = 0.5 * (lo + hi)
            cdf = sum(w * stdtr(df, (mid - c) / s) for w, c, s, df in parts) / total
            below = cdf < target
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return list(np.exp(0.5 * (lo + hi)))


def _origins(n: int, start: int) -> list[int]:
    """Origins (points fitted) from ``start`` to n - 1, at most MAX_ORIGINS, the last included."""
    if start > n - 1:
        return []
    every = list(range(start, n))
    if len(every) <= MAX_ORIGINS:
        return every
    picks = np.unique(np.round(np.linspace(start, n - 1, MAX_ORIGINS)).astype(int))
    return [int(k) for k in picks]


@dataclass(frozen=True)
class _Backtest:
    origin: int
    error: Array  # log(predicted) - log(observed) at points origin..n-1
    distance: Array


def _backtest(
    form: Form, x: Array, y: Array, origins: Sequence[int], first: int
) -> dict[int, _Backtest]:
    out: dict[int, _Backtest] = {}
    warm: tuple[float, ...] | None = None
    for k in origins:
        fitted = form.fit(x[first:k], y[first:k], warm)
        if fitted is None:
            continue
        fitted = trend_guard(fitted, x[first:k], y[first:k])
        predicted = fitted(x[k:])
        if not np.all(np.isfinite(predicted) & (predicted > 0)):
            continue
        warm = fitted.params
        span = math.log(x[k - 1]) - math.log(x[0])
        out[k] = _Backtest(
            k,
            np.log(np.maximum(predicted, 1e-300)) - np.log(y[k:]),
            (np.log(x[k:]) - math.log(x[k - 1])) / span,
        )
    return out


def _growth(errors: Array, distance: Array, noise: float) -> float:
    """Maximum-likelihood error growth for errors ~ N(0, noise**2 + (growth*d)**2)."""

    def nll(log_growth: float) -> float:
        var = noise**2 + (math.exp(log_growth) * distance) ** 2
        return float(np.sum(np.log(var) + errors**2 / var))

    res = minimize_scalar(nll, bounds=(math.log(MIN_GROWTH), math.log(10.0)), method="bounded")
    return max(math.exp(float(res.x)), MIN_GROWTH)


def extrapolate(x: Array, y: Array, confidence: float, plateau_end: int = 0) -> Extrapolation:
    """Fit the candidate forms to the curve (x ascending), backtest them, choose one.

    The first ``plateau_end`` points (the small-data region the exponent's fit found)
    are left out of the forms that cannot model that plateau; every form predicts,
    and is judged on, the same later points.

    Absurd inputs (losses of 1e300) overflow on the way; the forms that overflow
    lose the backtest, so the floating-point warnings carry no information."""
    with np.errstate(all="ignore"):
        return _extrapolate(x, y, confidence, plateau_end)


def _extrapolate(x: Array, y: Array, confidence: float, plateau_end: int) -> Extrapolation:
    n = len(x)
    half = (n + 1) // 2
    first = {f.name: 0 if f.plateau else plateau_end for f in FORMS}
    tests: dict[str, dict[int, _Backtest]] = {}
    for form in FORMS:
        start = first[form.name] + form.min_points
        if n < start:
            continue
        done = _backtest(form, x, y, _origins(n, max(half, start)), first[form.name])
        if done:
            tests[form.name] = done
    simplest = next(f for f in FORMS if f.name == "power-law")
    if not tests and n >= first[simplest.name] + 4:
        # Too short for the later half: backtest the simplest form from its minimum.
        start = first[simplest.name] + simplest.min_points
        done = _backtest(simplest, x, y, _origins(n, start), first[simplest.name])
        if done:
            tests[simplest.name] = done
    names = list(tests) or [simplest.name]
    by_name = {f.name: f for f in FORMS}
    fits: list[Fitted] = []
    for name in names:
        i = first[name]
        fitted = by_name[name].fit(x[i:], y[i:], None)
        fitted = None if fitted is None else trend_guard(fitted, x[i:], y[i:])
        if fitted is not None and np.all(np.isfinite(fitted(x[i:])) & (fitted(x[i:]) > 0)):
            fits.append(fitted)
    names = [f.form for f in fits]
    shared = sorted(set.intersection(*(set(tests.get(nm, {})) for nm in names))) if fits else []
    if not shared:
        # No backtest to model: a form is reported, the interval is the bootstrap's.
        # Without any usable fit the power law stands in (it may not predict: the
        # engine's own power law is used then).
        i = first[simplest.name]
        fits = fits or [simplest.fit(x[i:], y[i:], None)]  # type: ignore[list-item]
        scores = tuple(
            FormScore(f.form, 1.0 if i == 0 else 0.0, float("nan"), 0) for i, f in enumerate(fits)
        )
        return Extrapolation(tuple(fits), 0, scores, (), (), float(x[0]), float(x[-1]))
    mse = np.array([np.mean([np.mean(tests[nm][k].error ** 2) for k in shared]) for nm in names])
    # The first of the best: FORMS lists the forms from the fewest parameters up.
    chosen = int(np.argmin(mse))
    inverse = 1.0 / np.maximum(mse, 1e-12)
    mixture = tuple(float(w) for w in inverse / inverse.sum())
    models = tuple(
        _error_model(tests[nm], f, x[first[nm] :], y[first[nm] :], confidence)
        for nm, f in zip(names, fits, strict=True)
    )
    scores = tuple(
        FormScore(nm, w, float(np.sqrt(e)), sum(len(b.error) for b in tests[nm].values()))
        for nm, w, e in zip(names, mixture, mse, strict=True)
    )
    return Extrapolation(tuple(fits), chosen, scores, models, mixture, float(x[0]), float(x[-1]))


def _error_model(
    tests: dict[int, _Backtest], fit: Fitted, x: Array, y: Array, confidence: float
) -> ErrorModel:
    """One form's error model from every origin of its own backtest."""
    own = list(tests.values())
    errors = np.concatenate([b.error for b in own])
    distance = np.concatenate([b.distance for b in own])
    residual = np.log(np.maximum(fit(x), 1e-300)) - np.log(y)
    noise = float(np.sqrt(np.sum(residual**2) / max(len(x) - fit.k, 1)))
    return ErrorModel(
        noise=noise,
        growth=_growth(errors, distance, noise),
        t_quantile=float(stdtrit(len(own), (1.0 + confidence) / 2.0)),
        origins=len(own),
        n_backtests=len(errors),
        max_distance=float(distance.max()),
    )
