"""What the data say about each reported number, decided in one place.

Every quantity a fit reports (an exponent, a scale, a prediction, the data for a target,
a budget's optimum) is one of: *measured* (an interval bounded on both sides), *bounded*
on one side only, or *not identified* (nothing bounds it, or the law it belongs to
explains almost none of the variation). `judge` decides that from the numbers the fit
produced and rewrites the report so that every output (the CLI table, fit.json,
report.html, the plots, the status, `get`) renders one verdict instead of re-deciding
it: an interval end at an optimiser or parameter bound becomes open (null), a
zero-width interval (replicates that all agree, e.g. on noise-free data) becomes open,
a point outside its own interval widens it, a beta_p the data contradict becomes null
with its reason, a target below the fitted floor has no finite data size.

`invariants.violations` re-checks the invariants on the finished report; `fit_points`
runs both (`invariants.checked`), so no output can carry a report that breaks them (the
check raises instead of writing).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from scalingstudy.fitting.curve import BETA_MAX, BETA_MIN, PowerLaw
from scalingstudy.fitting.joint import BOUNDS as JOINT_BOUNDS
from scalingstudy.fitting.predict import TARGET_HORIZON
from scalingstudy.fitting.report import (
    ComputeOptimalReport,
    DataForTarget,
    ExponentPair,
    FitReport,
    JointLawReport,
    LearningCurve,
    ModelSizeLaw,
    OpenInterval,
    Prediction,
    Verdict,
    VerdictStatus,
)

#: Below this R^2 (log space) a law explains almost none of the variation of its points:
#: its exponent is named in a warning and not drawn as a line.
R2_MIN = 0.2
#: Relative tolerance for "the same number" (an end at a bound, a zero-width interval).
_REL = 1e-6
LOSS_LIMITS = (float.fromhex("0x1p-1022"), 1.7976931348623157e308)
#: Bounds the joint fit's optimiser works within, per reported parameter.
JOINT_LIMITS: dict[str, tuple[float, float]] = {
    "E": (math.exp(JOINT_BOUNDS[0][0]), math.exp(JOINT_BOUNDS[0][1])),
    "A": (math.exp(JOINT_BOUNDS[1][0]), math.exp(JOINT_BOUNDS[1][1])),
    "B": (math.exp(JOINT_BOUNDS[2][0]), math.exp(JOINT_BOUNDS[2][1])),
    "alpha_N": JOINT_BOUNDS[3],
    "beta_D": JOINT_BOUNDS[4],
}


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _REL * max(abs(a), abs(b), 1e-300)


def _at_bound(value: float, bounds: Sequence[float]) -> bool:
    return any(_same(value, b) for b in bounds)


def _outside(point: float, lo: float | None, hi: float | None) -> bool:
    """Whether ``point`` lies outside [lo, hi] by more than rounding (an open end holds
    anything)."""
    slack = _REL * max(abs(point), 1e-300)
    return (lo is not None and point < lo - slack) or (hi is not None and point > hi + slack)


def _status(interval: OpenInterval) -> VerdictStatus:
    lo, hi = interval
    if lo is not None and hi is not None:
        return "measured"
    if lo is not None:
        return "bounded-below"
    if hi is not None:
        return "bounded-above"
    return "not-identified"


@dataclass(frozen=True)
class Judged:
    """One quantity's interval after judging, and its verdict."""

    interval: OpenInterval | None
    verdict: Verdict


def judge_interval(
    quantity: str,
    point: float | None,
    interval: Sequence[float | None] | None,
    bounds: Sequence[float] = (),
    *,
    explained: float | None = None,
) -> Judged:
    """The honest interval of one quantity and its verdict. ``bounds``: values the
    optimiser or the parameterisation cannot pass (an end there is not a limit of the
    data); ``explained``: the R^2 of the law the quantity belongs to, when it has one."""
    if interval is None:
        # No interval was computed (bootstrap 0): nothing to judge but the law's R^2.
        poor = explained is not None and explained < R2_MIN
        reason = "no interval computed (bootstrap 0)" + (
            f"; its law explains almost none of the variation (R^2(log) = {explained:.2f})"
            if poor else "")  # fmt: skip
        return Judged(None, Verdict(quantity=quantity, status="measured", drawn=not poor,
                                    reason=reason))  # fmt: skip
    lo, hi = interval
    reasons = []
    if lo is not None and (_at_bound(lo, bounds) or not math.isfinite(lo)):
        lo = None
        reasons.append("an end at the fit's bound is not a limit of the data")
    if hi is not None and (_at_bound(hi, bounds) or not math.isfinite(hi)):
        hi = None
        reasons.append("an end at the fit's bound is not a limit of the data")
    if lo is not None and hi is not None and (hi < lo or _same(lo, hi)):
        lo = hi = None
        reasons.append("every resample gave the same value (no noise left to measure): no interval")
    if point is not None and math.isfinite(point):
        if _outside(point, lo, hi):  # a rounding step's miss is mended without a word
            reasons.append("widened to hold its point (the resamples' interval missed it)")
        lo = None if lo is None else min(lo, point)
        hi = None if hi is None else max(hi, point)
    judged: OpenInterval = [lo, hi]
    status = _status(judged)
    drawn = status != "not-identified"
    if status == "not-identified":
        reasons.append("the data bound it on neither side")
    if explained is not None and explained < R2_MIN:
        drawn = False
        reasons.append(f"its law explains almost none of the variation (R^2(log) = "
                       f"{explained:.2f})")  # fmt: skip
    verdict = Verdict(quantity=quantity, status=status, drawn=drawn,
                      reason="; ".join(dict.fromkeys(reasons)) or None)  # fmt: skip
    return Judged(judged, verdict)


@dataclass(frozen=True)
class Quantity:
    """One reported number with its interval, for the invariant check."""

    path: str
    point: float | None
    interval: Sequence[float | None] | None
    bounds: Sequence[float] = ()


def interval_problems(q: Quantity) -> Iterator[str]:
    """What is wrong with one quantity's interval (nothing: it may be printed)."""
    if q.interval is None:
        return
    lo, hi = q.interval
    for end in (lo, hi):
        if end is not None and (not math.isfinite(end) or _at_bound(end, q.bounds)):
            yield f"{q.path}: interval end {end!r} is a bound of the fit, not of the data"
    if lo is not None and hi is not None and _same(lo, hi):
        yield f"{q.path}: zero-width interval [{lo}, {hi}]"
    if q.point is not None and _outside(q.point, lo, hi):
        yield f"{q.path}: point {q.point!r} outside its interval [{lo}, {hi}]"


def _learning_curve(
    lc: LearningCurve, verdicts: list[Verdict], warnings: list[str]
) -> LearningCurve:
    beta = judge_interval("learning_curve.beta", lc.beta, lc.beta_interval,
                          (BETA_MIN, BETA_MAX), explained=lc.r2_log)  # fmt: skip
    alpha = judge_interval("learning_curve.alpha", lc.alpha, lc.alpha_interval)
    gamma = judge_interval("learning_curve.gamma", lc.gamma, lc.gamma_interval, (0.0,))
    verdicts += [beta.verdict, alpha.verdict]
    if lc.gamma_interval is not None:
        verdicts.append(gamma.verdict)
    if not beta.verdict.drawn:
        warnings.append(f"beta_g = {lc.beta:.4g} is not identified: {beta.verdict.reason}; "
                        "the curve is shown as points only")  # fmt: skip
    band = [
        b for b in lc.band
        if None not in b.interval
        and not list(interval_problems(Quantity("band", b.loss, b.interval, LOSS_LIMITS)))
    ]  # fmt: skip
    return lc.model_copy(update={
        "beta_interval": beta.interval, "alpha_interval": alpha.interval, "band": band,
        "gamma_interval": gamma.interval if lc.gamma_interval is not None else None,
    })  # fmt: skip


def contradicted_optima(ms: ModelSizeLaw) -> str | None:
    """Whether the fitted line contradicts a censored optimum by more than the grid's own
    half step there: the optimum is known to lie at or above (below) a bound, and the line
    passes below (above) it. Then the law is an artefact of the censoring, not a
    measurement; the reason says which edge of the grid to extend."""
    if ms.alpha is None or ms.beta is None:
        return None
    for e in ms.estimates:
        if e.censored is None:
            continue
        line = ms.alpha * float(e.data_size) ** ms.beta
        step = max(e.grid_best, e.parameters) / min(e.grid_best, e.parameters)
        if e.censored == "above" and line * step < e.parameters:
            return ("the fitted line passes below optima known to lie above the largest "
                    f"model size (m = {e.data_size:g}): add larger model sizes")  # fmt: skip
        if e.censored == "below" and line > e.parameters * step:
            return ("the fitted line passes above optima known to lie below the smallest "
                    f"model size (m = {e.data_size:g}): add smaller model sizes")  # fmt: skip
    return None


def _model_size(ms: ModelSizeLaw, verdicts: list[Verdict]) -> ModelSizeLaw:
    if ms.beta is None:
        verdicts.append(Verdict(quantity="model_size.beta", status="not-identified",
                                drawn=False, reason=ms.reason))  # fmt: skip
        return ms
    explained = ms.r2_log if ms.method == "best grid point" else None
    beta = judge_interval("model_size.beta", ms.beta, ms.beta_interval, explained=explained)
    reason = contradicted_optima(ms) or (None if beta.verdict.drawn else beta.verdict.reason)
    if reason is None:
        verdicts.append(beta.verdict)
        return ms.model_copy(update={"beta_interval": beta.interval})
    verdicts.append(Verdict(quantity="model_size.beta", status="not-identified", drawn=False,
                            reason=reason))  # fmt: skip
    return ms.model_copy(update={
        "beta": None, "alpha": None, "beta_interval": None, "method": "not measurable",
        "reason": f"beta_p is not measurable: {reason}",
    })  # fmt: skip


def _joint(joint: JointLawReport, verdicts: list[Verdict], warnings: list[str]) -> JointLawReport:
    intervals: dict[str, OpenInterval | None] = {}
    for key, (low, high) in JOINT_LIMITS.items():
        found = judge_interval(f"joint.{key}", getattr(joint, key), joint.intervals.get(key),
                               (low, high))  # fmt: skip
        intervals[key] = found.interval
        verdicts.append(found.verdict)
        if key in ("alpha_N", "beta_D") and not found.verdict.drawn:
            warnings.append(f"joint law: {key} = {getattr(joint, key):.4g} is not "
                            f"identified: {found.verdict.reason}")  # fmt: skip
    co = joint.compute_optimal
    a = judge_interval("joint.compute_optimal.a", co.a, co.a_interval, (0.0, 1.0))
    b = judge_interval("joint.compute_optimal.b", co.b, co.b_interval, (0.0, 1.0))
    verdicts += [a.verdict, b.verdict]
    optimal = co.model_copy(update={"a_interval": a.interval, "b_interval": b.interval})
    return joint.model_copy(update={"intervals": intervals, "compute_optimal": optimal})


def _prediction(i: int, p: Prediction, lc: LearningCurve, verdicts: list[Verdict],
                warnings: list[str]) -> Prediction:  # fmt: skip
    found = judge_interval(f"predictions[{i}]", p.loss, p.interval, LOSS_LIMITS)
    curve_loss = PowerLaw(lc.alpha, lc.beta, lc.gamma).value(float(p.data_size))
    shown = "no finite value" if curve_loss is None else f"{curve_loss:.4g}"
    parametric = judge_interval(f"predictions[{i}].curve_loss", curve_loss,
                                p.parametric_interval, LOSS_LIMITS)  # fmt: skip
    verdicts.append(found.verdict)
    note = None
    form = p.form or lc.form
    if form != lc.form or curve_loss is None or not _same(p.loss, curve_loss):
        note = (f"the point is the {form} form the backtest chose (held within the forms' "
                f"middle half); the curve printed above gives {shown} here")  # fmt: skip
    if lc.gamma > 0 and p.loss < lc.gamma:
        warnings.append(
            f"the prediction at m = {p.data_size:g} ({p.loss:.4g}) lies below the fitted "
            f"irreducible error gamma = {lc.gamma:.4g}: the backtest preferred the {form} "
            f"form, which has no floor; the curve with gamma gives {shown}; the interval "
            "covers both"
        )
    update = {"interval": found.interval, "curve_loss": curve_loss,
              "parametric_interval": parametric.interval, "note": note}  # fmt: skip
    return p.model_copy(update=update)


def _target(
    t: DataForTarget, lc: LearningCurve, reach: tuple[float, float], verdicts: list[Verdict]
) -> DataForTarget:
    """``reach``: where the search for the target starts (the smallest data size) and
    ends (TARGET_HORIZON times the largest): an answer at either is not a limit."""
    start, horizon = reach
    ends = [None if v is None or v <= start * (1 + _REL) or v >= horizon * (1 - _REL)
            else v for v in (t.interval or [None, None])]  # fmt: skip
    if t.interval is not None:
        t = t.model_copy(update={"interval": ends})
    if t.data_size is not None and float(t.data_size) >= horizon * (1 - _REL):
        # Past the search's horizon (a bootstrap-only inversion has none of its own): as
        # unreachable as a curve that never gets there.
        t = t.model_copy(update={"data_size": None, "distance_ratio": None, "parameters": None})
    if t.data_size is not None and float(t.data_size) <= start * (1 + _REL):
        verdicts.append(Verdict(
            quantity="data_for_target", status="not-identified", drawn=False,
            reason=f"the target is reached already at the smallest data size ({start:g}): "
            "the data do not say how much less would do",
        ))  # fmt: skip
        return t.model_copy(update={"data_size": None, "distance_ratio": None,
                                    "parameters": None, "interval": [None, ends[1]]})  # fmt: skip
    if lc.gamma > 0 and t.target_loss <= lc.gamma:
        lo = (t.interval or [None, None])[0]
        verdicts.append(Verdict(
            quantity="data_for_target", status="bounded-below" if lo else "not-identified",
            drawn=False, reason="it may be unreachable: the target lies below the fitted "
            f"irreducible error {lc.gamma:.4g}",
        ))  # fmt: skip
        return t.model_copy(update={"data_size": None, "distance_ratio": None,
                                    "parameters": None, "interval": [lo, None]})  # fmt: skip
    point = None if t.data_size is None else float(t.data_size)
    found = judge_interval("data_for_target", point, t.interval)
    verdict = found.verdict
    if point is None:
        verdict = verdict.model_copy(update={"drawn": False, "reason": (
            "it may be unreachable: the predicted loss does not fall to it within a million "
            "times the largest data size")})  # fmt: skip
    verdicts.append(verdict)
    return t.model_copy(update={"interval": found.interval})


def _pair(name: str, pair: ExponentPair | None, verdicts: list[Verdict]) -> ExponentPair | None:
    if pair is None:
        return None
    found = judge_interval(f"compute_optimal.{name}.a", pair.a, pair.a_interval)
    verdicts.append(found.verdict)
    return ExponentPair.of(pair.a, found.interval or [None, None])


def _compute_optimal(co: ComputeOptimalReport, verdicts: list[Verdict]) -> ComputeOptimalReport:
    budgets = []
    for i, b in enumerate(co.budgets):
        found = judge_interval(f"compute_optimal.budgets[{i}]", b.best_parameters, b.interval)
        budgets.append(b.model_copy(update={"interval": found.interval or [None, None]}))
        verdicts.append(found.verdict)
    per_budget = _pair("per_budget", co.per_budget, verdicts)
    joint = _pair("joint", co.joint, verdicts)
    main = per_budget if co.method == "per-budget" else joint if co.method == "joint" else None
    return co.model_copy(update={
        "budgets": budgets, "per_budget": per_budget, "joint": joint,
        "model_size_exponent_interval": main.a_interval if main else None,
        "data_size_exponent_interval": main.b_interval if main else None,
    })  # fmt: skip


def judge(report: FitReport) -> FitReport:
    """The report with every quantity judged (see the module docstring)."""
    verdicts: list[Verdict] = []
    warnings = list(report.warnings)
    lc = _learning_curve(report.learning_curve, verdicts, warnings)
    update: dict[str, object] = {"learning_curve": lc}
    size = report.model_size
    if size is not None:
        size = _model_size(size, verdicts)
        update["model_size"] = size
    if report.joint is not None:
        update["joint"] = _joint(report.joint, verdicts, warnings)
    update["predictions"] = [_prediction(i, p, lc, verdicts, warnings)
                             for i, p in enumerate(report.predictions)]  # fmt: skip
    if report.data_for_target is not None and (size is None or size.beta is None):
        # The best model size there comes from beta_p: none when beta_p is not measured.
        report = report.model_copy(update={
            "data_for_target": report.data_for_target.model_copy(update={"parameters": None})
        })  # fmt: skip
    if report.data_for_target is not None:
        sizes = [float(b.data_size) for b in report.best]
        reach = (min(sizes), max(sizes) * TARGET_HORIZON)
        update["data_for_target"] = _target(report.data_for_target, lc, reach, verdicts)
    if report.compute_optimal is not None:
        update["compute_optimal"] = _compute_optimal(report.compute_optimal, verdicts)
    update["warnings"] = list(dict.fromkeys(warnings))
    update["verdicts"] = verdicts
    return report.model_copy(update=update)
