"""The forecast's uncertainty measured on the study's own finished trials (rule v2).

A curve's own backtest (curvefit.py) can only say how well the law extrapolates the
curve it has seen; it cannot know that this study's schedule anneals at the end, or
that its losses keep falling longer than a power law says. The study's finished trials
can: each is a backtest of the whole forecast, from its curve up to a rung fraction f of
its budget to its recorded final. Their errors, in log loss (so that losses of different
data sizes share one scale), give the interval of a running trial's forecast at the same
rung by their empirical quantiles: the bias of the forecast is corrected and its spread
is what the study shows, not a conservative guess.

Small samples: with n errors, a new trial's error lies below the k-th smallest with
probability k/(n+1) (exchangeability, the conformal argument). The lower bound at
confidence c is the order statistic k = (1-c)(n+1) where that is at least 1; below
that, the smallest error extended by an exponential tail fitted to the lowest fifth of
the errors (a generalised Pareto tail of shape 0), so a handful of trials gives a wide
interval that narrows as more finish. The upper bound is the same on the other tail.

Pure and deterministic: the finished competitors in (sorted by name), the errors out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from scalingstudy.pruning.curvefit import Forecast, forecast
from scalingstudy_sdk.curve import Curve, CurvePoint

#: The share of the errors read as the tail when the confidence lies past the sample.
TAIL_SHARE = 0.2
#: Finished trials whose ordered pairs bound a difference of errors (n (n - 1) pairs: a
#: study of 1,000 trials would sort a million per decision); more are thinned evenly.
MAX_PAIR_TRIALS = 100


def finite(points: Sequence[CurvePoint]) -> list[CurvePoint]:
    """The evaluations a forecast can use: a positive step and a finite loss."""
    return [
        p
        for p in points
        if p.step > 0 and p.validation_loss is not None and math.isfinite(p.validation_loss)
    ]


def rung_step(rung: float, budget: int) -> int:
    """The step of a rung (a fraction of the budget)."""
    return math.floor(rung * budget)


def forecast_at(curve: Curve, step: int, min_evaluations: int) -> Forecast | None:
    """The forecast of the final from the curve up to ``step``; None with fewer than
    ``min_evaluations`` finite evaluations (or 3) or no budget."""
    budget = curve.step_budget
    seen = finite([p for p in curve.points if p.step <= step])
    if not budget or len(seen) < max(min_evaluations, 3):
        return None
    return forecast(
        tuple(p.step for p in seen), tuple(p.validation_loss or 0.0 for p in seen), budget
    )


@lru_cache(maxsize=8192)
def backtest(
    curve: Curve, final: float, rungs: tuple[float, ...], min_evaluations: int
) -> tuple[tuple[float, float], ...]:
    """A finished trial's (rung, log error) pairs: log(final) - log(forecast) from its
    curve up to each rung it reached. Cached: a finished trial's backtest never changes."""
    budget, last = curve.step_budget, curve.last_step
    if not budget or last is None or not (final > 0 and math.isfinite(final)):
        return ()
    out = []
    for rung in rungs:
        step = rung_step(rung, budget)
        if step > last:
            break
        fc = forecast_at(curve, step, min_evaluations)
        if fc is not None and fc.mean > 0:
            out.append((rung, math.log(final) - math.log(fc.mean)))
    return tuple(out)


@dataclass(frozen=True)
class Calibration:
    """The log errors of the study's finished forecasts: per rung (sorted), and per
    finished trial (its error at each rung it reached, for the comparisons of pairs);
    with a prior (prior.py), its curves' errors pooled in at a rung where the study has
    fewer than ``minimum`` of its own."""

    errors: Mapping[float, tuple[float, ...]]
    minimum: int
    """Errors a rung needs before its interval is used (minCalibrationTrials)."""
    per_trial: tuple[Mapping[float, float], ...] = ()
    own: Mapping[float, int] = field(default_factory=dict)
    """The study's own finished trials at each rung (the rest of ``errors`` is the
    prior's); empty: all are the study's."""
    prior: tuple[Mapping[float, float], ...] = ()
    _pairs: dict[tuple[float, float, float], float] = field(
        default_factory=dict, compare=False, repr=False
    )

    def trials(self, rung: float) -> int:
        """The study's own finished trials that reached ``rung``."""
        return self.own.get(rung, len(self.errors.get(rung, ())))

    def describe(self, rung: float) -> str:
        """Whose backtests bound a forecast at ``rung``, for a decision's message."""
        own, n = self.trials(rung), len(self.errors.get(rung, ()))
        mine = f"{own} finished trials'"
        return f"{mine} backtests" if n == own else f"{mine} and {n - own} prior curves' backtests"

    def bounds(self, rung: float, confidence: float) -> tuple[float, float] | None:
        """The (lower, upper) log-error bounds at ``rung``, each one-sided at
        ``confidence``; None with fewer than ``minimum`` errors there."""
        errors = self.errors.get(rung, ())
        if len(errors) < max(self.minimum, 2):
            return None
        low = lower_quantile(errors, confidence)
        high = -lower_quantile(tuple(-e for e in reversed(errors)), confidence)
        return low, high

    def difference(self, rung: float, other: float, confidence: float) -> float | None:
        """A lower bound, at ``confidence``, on e_T - e_C: the error of a forecast at
        ``rung`` less that of another trial's forecast at ``other``, from every ordered
        pair of distinct finished trials (and prior curves, where the study has fewer
        than ``minimum`` of its own at either rung). One bound on the difference, not two
        bounds added: two one-sided 99% bounds together are far surer than 99%, and
        errors that the study's trials share (a schedule's anneal) cancel in it. None
        with fewer than ``minimum`` errors at either rung."""
        if min(len(self.errors.get(rung, ())), len(self.errors.get(other, ()))) < max(
            self.minimum, 2
        ):
            return None
        key = (rung, other, confidence)
        if key not in self._pairs:
            pooled = min(self.trials(rung), self.trials(other)) < self.minimum
            everyone = self.per_trial + (self.prior if pooled else ())
            step = max(1, math.ceil(len(everyone) / MAX_PAIR_TRIALS))
            diffs = sorted(
                a[rung] - b[other]
                for a, b in itertools.permutations(everyone[::step], 2)
                if rung in a and other in b
            )
            if len(diffs) < 2:
                return None
            self._pairs[key] = lower_quantile(diffs, confidence)
        return self._pairs[key]


def lower_quantile(errors: Sequence[float], confidence: float) -> float:
    """A value a new error lies above with probability ``confidence``, from sorted
    ``errors`` (at least 2): the order statistic where the sample reaches it, else the
    smallest extended by an exponential tail fitted to the lowest errors."""
    n = len(errors)
    rank = round((1.0 - confidence) * (n + 1), 9)  # 1-based rank of the order statistic
    if rank >= 1.0:
        return errors[math.floor(rank) - 1]  # the lower of the ranks around it
    m = max(2, math.ceil(TAIL_SHARE * n))
    scale = (errors[m - 1] - errors[0]) / math.log(m)
    return errors[0] - scale * math.log(1.0 / rank)


def calibrate(
    finished: Sequence[tuple[Curve, float]], rungs: Sequence[float], min_evaluations: int,
    minimum: int, prior: Sequence[Mapping[float, float]] = (),
) -> Calibration:  # fmt: skip
    """The calibration from the finished trials' curves and recorded finals (in any
    order: the errors are sorted). ``prior``: other curves' errors per rung (an earlier
    study of the same task, say; docs/pruning.md), pooled with the study's own at a rung
    where fewer than ``minimum`` of its own reached it (and in the pairs of a
    difference), so a forecast there is bounded before the study calibrates; from
    ``minimum`` on, the study's own errors alone."""
    per: dict[float, list[float]] = {r: [] for r in rungs}
    trials = []
    for curve, final in finished:
        errors = backtest(curve, final, tuple(rungs), min_evaluations)
        for rung, error in errors:
            per[rung].append(error)
        if errors:
            trials.append(dict(errors))
    own = {r: len(e) for r, e in per.items()}
    if prior:
        for rung, pooled in per.items():
            if len(pooled) < minimum:
                pooled.extend(e[rung] for e in prior if rung in e)
    return Calibration({r: tuple(sorted(e)) for r, e in per.items()}, minimum, tuple(trials),
                       own, tuple(prior))  # fmt: skip
