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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from scalingstudy.pruning.curvefit import Forecast, forecast
from scalingstudy.spec.pruning import PruningSpec
from scalingstudy_sdk.curve import Curve, CurvePoint


@dataclass(frozen=True)
class Competitor:
    """One trial of a study as pruning sees it: where it sits, its curve from its own
    log, and its recorded final once finished."""

    trial: str
    data_size: int
    model_size: int
    seed: int
    learning_rate: float | None
    curve: Curve
    final: float | None
    """A finished trial's recorded loss; None while running (or pruned, or failed)."""
    running: bool


@dataclass(frozen=True)
class Prune:
    """A trial to stop, and why (one line)."""

    trial: str
    step: int
    best_loss: float | None
    message: str


@dataclass(frozen=True)
class _Bound:
    value: float
    trial: str
    kind: str


def _finite(points: Sequence[CurvePoint]) -> list[CurvePoint]:
    return [
        p
        for p in points
        if p.step > 0 and p.validation_loss is not None and math.isfinite(p.validation_loss)
    ]


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


def pessimistic(c: Competitor, z: float, settings: PruningSpec, lowest: bool) -> _Bound | None:
    """A competitor's worst plausible final, or None when nothing bounds it (failed,
    pruned, or running without enough curve to forecast)."""
    if c.final is not None and math.isfinite(c.final):
        return _Bound(c.final, c.trial, "final loss")
    if not c.running or _diverged(c.curve):
        return None
    best = c.curve.best()
    bounds: list[_Bound] = []
    if lowest and best is not None:
        bounds.append(_Bound(best, c.trial, "best loss so far"))
    budget = c.curve.step_budget
    if budget and len(_finite(c.curve.points)) >= settings.min_evaluations:
        fc = _forecast_of(c.curve.points, budget)
        if fc is not None:
            bounds.append(_Bound(fc.upper(z), c.trial, "predicted final (upper bound)"))
    return min(bounds, key=lambda b: b.value) if bounds else None


def _rung(c: Competitor, settings: PruningSpec) -> int | None:
    """The step of the last rung the trial has passed, or None before the first."""
    budget, last = c.curve.step_budget, c.curve.last_step
    if not budget or last is None:
        return None
    passed = [r for r in settings.rungs if last >= r * budget]
    return math.floor(passed[-1] * budget) if passed else None


def _optimistic(
    c: Competitor, rung: int, z: float, settings: PruningSpec, lowest: bool
) -> float | None:
    """T's best plausible final, judged on its curve up to ``rung``; None when too few
    evaluations to judge."""
    seen = [p for p in c.curve.points if p.step <= rung]
    if len(_finite(seen)) < settings.min_evaluations or not c.curve.step_budget:
        return None
    fc = _forecast_of(seen, c.curve.step_budget)
    if fc is None:
        return None
    if not lowest:
        return fc.lower(z)
    best = c.curve.best()
    low = fc.lowest_lower(z)
    return low if best is None else min(low, best)


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
    if known:
        sizes = sorted({c.model_size for c in slot})
        best = sizes.index(min(known)[2])
        if abs(sizes.index(t.model_size) - best) == 1:
            return same_size
    return [c for c in slot if c.trial != t.trial]


def _judge(
    t: Competitor, rivals: Sequence[Competitor], bounds: dict[str, _Bound | None],
    z: float, settings: PruningSpec, lowest: bool,
) -> Prune | None:  # fmt: skip
    """Whether T is stopped against the best bound among its rivals."""
    rung = _rung(t, settings)
    known = [b for c in rivals if (b := bounds[c.trial]) is not None]
    if rung is None or not known:
        return None
    best = min(known, key=lambda b: (b.value, b.trial))
    own = bounds[t.trial]
    if own is not None and (own.value, own.trial) <= (best.value, best.trial):
        return None  # T itself is the slot's best bound: it is what the others meet
    step = t.curve.last_step or 0
    budget = t.curve.step_budget
    if _diverged(t.curve):
        why = f"its loss is not finite (diverged); {best.trial} has {best.kind} {best.value:.4g}"
        return Prune(t.trial, step, t.curve.best(), why)
    low = _optimistic(t, rung, z, settings, lowest)
    if low is None or low <= best.value:
        return None
    n = len(_finite([p for p in t.curve.points if p.step <= rung]))
    return Prune(
        t.trial, step, t.curve.best(),
        f"cannot win its slot: its final loss is at least {low:.4g} "
        f"({settings.confidence:.0%} lower bound from {n} evaluations up to step {rung} of "
        f"{budget}), above {best.trial}'s {best.kind} {best.value:.4g}",
    )  # fmt: skip


def decide(
    competitors: Sequence[Competitor], settings: PruningSpec, *, final_is_lowest: bool = False
) -> list[Prune]:
    """The running trials to stop now, in trial-name order. ``final_is_lowest``: the
    trainer reports its lowest evaluation as its result (the built-in trainer does), so a
    running trial's best so far bounds its final from above. Nothing when disabled."""
    if not settings.enabled:
        return []
    z = NormalDist().inv_cdf(settings.confidence)
    everyone = sorted(competitors, key=lambda c: c.trial)
    bounds = {c.trial: pessimistic(c, z, settings, final_is_lowest) for c in everyone}
    out = []
    for t in everyone:
        if not t.running or t.final is not None or not t.curve.step_budget:
            continue
        rivals = _rivals(t, everyone, bounds, settings)
        prune = _judge(t, rivals, bounds, z, settings, final_is_lowest)
        if prune is not None:
            out.append(prune)
    return out
