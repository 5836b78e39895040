"""The pruning rule: which running trials cannot win their slot. Pure: the competitors'
curves and results in, the trials to stop out; the same inputs in any order give the
same answer, so a restarted operator or runner decides exactly as before.

A trial T is stopped only when all of these hold:
- it is running, its step budget is known and it has passed the first rung (a fraction
  of its budget); it is judged on its curve up to the last rung passed;
- its curve there has at least ``minEvaluations`` finite evaluations;
- the lower confidence bound of its forecast final loss (`forecast`) is above the
  pessimistic final of its best competitor, and that competitor is not T and is never
  stopped in the same decision (so the last competitor is never stopped).
A competitor's pessimistic final is its recorded loss once finished; while running, the
upper bound of its own forecast, or its best evaluation so far where the trainer reports
its lowest evaluation (the built-in trainer), whichever is lower.
A curve with a non-finite evaluation (diverged) beside a finite competitor is stopped at
its first rung.

Rule v2 (calibration.py): once ``minCalibrationTrials`` finished trials of the study
reached a rung, a forecast made at that rung has the interval their backtests measured
(the empirical quantiles of log(final / forecast)) instead of the curve's own
conservative one; a competitor is bounded at its own last rung passed the same way.

Across seeds (arms.py): in a study of several seeds the unit that competes is an arm, one
(data size, model size, learning rate) over every planned seed, judged by the means of
these same per-trial bounds; a study of one seed is judged exactly as above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from scalingstudy.pruning.arms import SeedBound, decide_arms, next_to_best
from scalingstudy.pruning.calibration import Calibration, calibrate, forecast_at
from scalingstudy.pruning.calibration import finite as _finite
from scalingstudy.pruning.curvefit import Forecast, forecast
from scalingstudy.pruning.decision import Competitor as Competitor
from scalingstudy.pruning.decision import Prune as Prune
from scalingstudy.spec.pruning import PruningSpec
from scalingstudy_sdk.curve import Curve, CurvePoint

#: A backtested log error beyond this (a factor of e^700) bounds nothing: past it exp
#: overflows, and no trainer's loss is that far off its forecast but by a bug.
MAX_LOG_ERROR = 700.0


@dataclass(frozen=True)
class _Bound:
    value: float
    trial: str
    kind: str


def _diverged(curve: Curve) -> bool:
    return any(
        p.validation_loss is not None and not math.isfinite(p.validation_loss) for p in curve.points
    )


def _forecast_of(points: Sequence[CurvePoint], budget: int) -> Forecast | None:
    finite = _finite(points)
    if len(finite) < 3:
        return None
    steps = tuple(p.step for p in finite)
    return forecast(steps, tuple(p.validation_loss or 0.0 for p in finite), budget)


@dataclass(frozen=True)
class _Context:
    """What every judgement of one decision shares."""

    z: float
    settings: PruningSpec
    lowest: bool
    calibration: Calibration


@dataclass(frozen=True)
class _Calibrated:
    """A running trial's forecast at its last rung passed, bounded by the study's
    backtests there."""

    rung: float
    mean: float
    lower: float
    upper: float
    trials: int
    why: str
    """Whose backtests bound it (`Calibration.describe`)."""


def _calibrated(c: Competitor, ctx: _Context) -> _Calibrated | None:
    """The forecast of ``c`` at its last rung passed and its calibrated bounds; None
    where that rung has too few finished backtests (or ``c`` too few evaluations)."""
    rung = _rung(c, ctx.settings)
    if rung is None:
        return None
    fraction, step = rung
    bounds = ctx.calibration.bounds(fraction, ctx.settings.confidence)
    fc = forecast_at(c.curve, step, ctx.settings.min_evaluations)
    if bounds is None or fc is None or fc.mean <= 0:
        return None
    low, high = bounds
    trials = ctx.calibration.trials(fraction)
    if max(abs(low), abs(high)) > MAX_LOG_ERROR:  # a trainer's absurd loss: no bound
        return None
    return _Calibrated(fraction, fc.mean, fc.mean * math.exp(low), fc.mean * math.exp(high),
                       trials, ctx.calibration.describe(fraction))  # fmt: skip


def pessimistic(c: Competitor, ctx: _Context) -> _Bound | None:
    """A competitor's worst plausible final, or None when nothing bounds it (failed,
    pruned, or running without enough curve to forecast)."""
    if c.final is not None and math.isfinite(c.final):
        return _Bound(c.final, c.trial, "final loss")
    if not c.running or _diverged(c.curve):
        return None
    best = c.curve.best()
    bounds: list[_Bound] = []
    if ctx.lowest and best is not None:
        bounds.append(_Bound(best, c.trial, "best loss so far"))
    budget = c.curve.step_budget
    calibrated = _calibrated(c, ctx)
    if calibrated is not None:
        bounds.append(_Bound(calibrated.upper, c.trial, "predicted final (upper bound, "
                             f"{calibrated.why})"))  # fmt: skip
    elif budget and len(_finite(c.curve.points)) >= ctx.settings.min_evaluations:
        fc = _forecast_of(c.curve.points, budget)
        if fc is not None:
            bounds.append(_Bound(fc.upper(ctx.z), c.trial, "predicted final (upper bound)"))
    return min(bounds, key=lambda b: b.value) if bounds else None


def _rung(c: Competitor, settings: PruningSpec) -> tuple[float, int] | None:
    """The last rung the trial has passed (its fraction and step), or None before the
    first."""
    budget, last = c.curve.step_budget, c.curve.last_step
    if not budget or last is None:
        return None
    passed = [r for r in settings.rungs if last >= r * budget]
    return (passed[-1], math.floor(passed[-1] * budget)) if passed else None


def _optimistic(c: Competitor, rung: int, ctx: _Context) -> tuple[float, str] | None:
    """T's best plausible final, judged on its curve up to ``rung``, and how it was
    bounded; None when too few evaluations to judge."""
    seen = [p for p in c.curve.points if p.step <= rung]
    n = len(_finite(seen))
    if n < ctx.settings.min_evaluations or not c.curve.step_budget:
        return None
    best = c.curve.best()
    calibrated = _calibrated(c, ctx)
    if calibrated is not None:
        low = calibrated.lower
        why = f"from {calibrated.why} at step {rung}"
    else:
        fc = _forecast_of(seen, c.curve.step_budget)
        if fc is None:
            return None
        low = fc.lowest_lower(ctx.z) if ctx.lowest else fc.lower(ctx.z)
        why = f"from {n} evaluations up to step {rung}"
    if ctx.lowest and best is not None:
        low = min(low, best)
    return low, why


def _rivals(
    t: Competitor, everyone: Sequence[Competitor], bounds: dict[str, _Bound | None],
    settings: PruningSpec,
) -> list[Competitor]:  # fmt: skip
    """T's competitors: the other learning rates of its (data size, model size, seed),
    and, where model sizes compete, the other trials of its (data size, seed), except
    for a model size next to the slot's best one, which is kept for the model-size law
    (its continuous optimum is read from the best size's neighbours)."""
    slot = [c for c in everyone if c.data_size == t.data_size and c.seed == t.seed]
    same_size = [c for c in slot if c.model_size == t.model_size and c.trial != t.trial]
    if not settings.compare_model_sizes:
        return same_size
    known = [(b.value, b.trial, c.model_size) for c in slot if (b := bounds[c.trial]) is not None]
    resulting = (c.model_size for c in slot if c.running or c.final is not None)
    if known and next_to_best(resulting, t.model_size, min(known)[2]):
        return same_size
    return [c for c in slot if c.trial != t.trial]


def _judge(
    t: Competitor, rivals: Sequence[Competitor], bounds: dict[str, _Bound | None],
    ctx: _Context,
) -> Prune | None:  # fmt: skip
    """Whether T is stopped against the best bound among its rivals."""
    rung = _rung(t, ctx.settings)
    known = [b for c in rivals if (b := bounds[c.trial]) is not None]
    if rung is None or not known:
        return None
    best = min(known, key=lambda b: (b.value, b.trial))
    own = bounds[t.trial]
    if own is not None and (own.value, own.trial) <= (best.value, best.trial):
        return None  # T itself is the slot's best bound: it is what the others meet
    step = t.curve.last_step or 0
    if _diverged(t.curve):
        return _diverged_prune(t, rivals)
    judged = _optimistic(t, rung[1], ctx)
    if judged is None:
        return None
    if judged[0] <= best.value:
        return _against_running(t, rivals, ctx)
    low, how = judged
    return Prune(
        t.trial, step, t.curve.best(),
        f"cannot win its slot: its final loss is at least {low:.4g} "
        f"({ctx.settings.confidence:.0%} lower bound {how} of {t.curve.step_budget}), "
        f"above {best.trial}'s {best.kind} {best.value:.4g}", best.trial,
    )  # fmt: skip


def _seen(c: Competitor) -> float | None:
    """The lowest loss a rival has shown: its recorded final, or a running (finite)
    trial's best evaluation so far."""
    if c.final is not None and math.isfinite(c.final):
        return c.final
    if c.running and not _diverged(c.curve):
        return c.curve.best()
    return None


def _diverged_prune(t: Competitor, rivals: Sequence[Competitor]) -> Prune | None:
    """A diverged trial is stopped at once, unless what it evaluated before diverging
    still beats every rival (a trainer reports its lowest finite evaluation: the built-in
    trainer and the SDK's callbacks do): its loss will not come back, and nothing is
    learnt by letting it run. If the rival it lost to fails later, the decision lapses."""
    shown = sorted((v, c.trial) for c in rivals if (v := _seen(c)) is not None)
    had = t.curve.best()
    if not shown or (had is not None and had <= shown[0][0]):
        return None
    value, rival = shown[0]
    why = f"its loss is not finite (diverged); {rival} has shown {value:.4g}"
    if had is not None:
        why += f", below the {had:.4g} it reached before"
    return Prune(t.trial, t.curve.last_step or 0, had, why, rival)


def _against_running(t: Competitor, rivals: Sequence[Competitor], ctx: _Context) -> Prune | None:
    """T stopped against a running rival whose forecast is lower than T's by more than
    the study's backtests let the two forecasts' errors differ (`Calibration.difference`:
    one bound on the pair, where the bounds of each, added, ask for far more)."""
    own = _calibrated(t, ctx)
    if own is None or not t.running:
        return None
    for c in sorted(rivals, key=lambda c: c.trial):
        if not c.running or _diverged(c.curve) or (theirs := _calibrated(c, ctx)) is None:
            continue
        d = ctx.calibration.difference(own.rung, theirs.rung, ctx.settings.confidence)
        if d is None or math.log(own.mean) - math.log(theirs.mean) + d <= 0:
            continue
        return Prune(
            t.trial, t.curve.last_step or 0, t.curve.best(),
            f"cannot win its slot: its predicted final {own.mean:.4g} is above {c.trial}'s "
            f"{theirs.mean:.4g} by more than {-d:.3g} in log loss, the "
            f"{ctx.settings.confidence:.0%} bound of the difference of two forecasts' "
            f"errors ({own.why})", c.trial,
        )  # fmt: skip
    return None


def _seed_bound(c: Competitor, own: _Bound | None, ctx: _Context) -> SeedBound:
    """One trial's bounds for its arm's means: its pessimistic final, and its recorded
    final once finished or, running past the first rung, the same lower bound a trial
    of one seed is judged by. A diverged trial's final is the lowest finite evaluation
    it reached where the trainer reports its lowest; otherwise it will fail."""
    pess = None if own is None else own.value
    if c.final is not None and math.isfinite(c.final):
        return SeedBound(c, pess, c.final)
    rung = _rung(c, ctx.settings) if c.running else None
    if rung is None:
        return SeedBound(c, pess, None)
    if _diverged(c.curve):
        best = c.curve.best()
        if ctx.lowest and best is not None:
            return SeedBound(c, pess, best)
        # It fails, or (a trainer that reports its best finite evaluation: the SDK's
        # callbacks) its result is the best it reached: the arm's mean is read both ways.
        return SeedBound(c, pess, best, fails=True)
    judged = _optimistic(c, rung[1], ctx)
    return SeedBound(c, pess, None if judged is None else judged[0])


def study_calibration(
    competitors: Sequence[Competitor], settings: PruningSpec,
    prior: Sequence[Mapping[float, float]] = (),
) -> Calibration:  # fmt: skip
    """The calibration from every finished trial of the study with a recorded loss and a
    curve (any slot: the forecast's errors are the study's, not the slot's), with
    ``prior``'s errors pooled in where the study has too few of its own."""
    finished = [
        (c.curve, c.final)
        for c in sorted(competitors, key=lambda c: c.trial)
        if c.final is not None and math.isfinite(c.final) and c.curve.step_budget
    ]
    return calibrate(finished, settings.rungs, settings.min_evaluations,
                     settings.min_calibration_trials, prior)  # fmt: skip


def decide(
    competitors: Sequence[Competitor],
    settings: PruningSpec,
    *,
    final_is_lowest: bool = False,
    prior: Sequence[Mapping[float, float]] | None = None,
    seeds: Sequence[int] | None = None,
    across_seeds: bool = True,
    rates_swept: bool | None = None,
) -> list[Prune]:
    """The running trials to stop now, in trial-name order. ``final_is_lowest``: the
    trainer reports its lowest evaluation as its result (the built-in trainer does), so a
    running trial's best so far bounds its final from above. ``prior``: other curves'
    forecast errors per rung, pooled with the study's own where it has fewer than
    minCalibrationTrials (`calibration.calibrate`; the runner and the operator pass none:
    docs/pruning.md). ``seeds``: the seeds the study plans (default: every seed among
    ``competitors``; a competitor of another seed, which an edit removed, is left out);
    with several, arms across seeds compete (arms.py) unless ``across_seeds`` is False
    (each seed's slot on its own: the rule before arms, kept for the benchmark's
    contrast). ``rates_swept``: the study sweeps learning rates (then model sizes do not
    compete across seeds; default: more than one rate among ``competitors``). Nothing
    when disabled."""
    if not settings.enabled:
        return []
    z = NormalDist().inv_cdf(settings.confidence)
    everyone = sorted((c for c in competitors if seeds is None or c.seed in seeds),
                      key=lambda c: c.trial)  # fmt: skip
    ctx = _Context(z, settings, final_is_lowest, study_calibration(everyone, settings, prior or ()))
    bounds = {c.trial: pessimistic(c, ctx) for c in everyone}
    planned = sorted(set(seeds) if seeds else {c.seed for c in everyone})
    if across_seeds and len(planned) > 1:
        seeded = [_seed_bound(c, bounds[c.trial], ctx) for c in everyone]
        swept = (len({c.learning_rate for c in everyone}) > 1 if rates_swept is None
                 else rates_swept)  # fmt: skip
        sizes = settings.compare_model_sizes and not swept
        return decide_arms(seeded, planned, sizes, settings.confidence)
    out = []
    for t in everyone:
        if not t.running or t.final is not None or not t.curve.step_budget:
            continue
        rivals = _rivals(t, everyone, bounds, settings)
        prune = _judge(t, rivals, bounds, ctx)
        if prune is not None:
            out.append(prune)
    return out
