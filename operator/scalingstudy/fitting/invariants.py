"""The invariants every fit report keeps, checked after `verdict.judge` and before any
output is written: a point inside its interval, no zero-width interval, no fit or
parameter bound printed as a limit, an unidentified exponent named and not drawn, a
prediction below the fitted floor explained, no finite data size for a target below it.
`benchmarks/honesty.py` and tests/test_verdict.py run them on generated studies."""

from __future__ import annotations

from collections.abc import Iterator

from scalingstudy.fitting.curve import BETA_MAX, BETA_MIN
from scalingstudy.fitting.points import FitError
from scalingstudy.fitting.report import ComputeOptimalReport, FitReport
from scalingstudy.fitting.verdict import (
    JOINT_LIMITS,
    LOSS_LIMITS,
    R2_MIN,
    Quantity,
    contradicted_optima,
    interval_problems,
    judge,
)


class InvariantError(FitError):
    """A finished report breaks an invariant of `violations` (a bug: nothing is written)."""


def quantities(report: FitReport) -> Iterator[Quantity]:
    """Every (number, interval) pair the report prints."""
    lc = report.learning_curve
    yield Quantity("learning_curve.beta", lc.beta, lc.beta_interval, (BETA_MIN, BETA_MAX))
    yield Quantity("learning_curve.alpha", lc.alpha, lc.alpha_interval)
    yield Quantity("learning_curve.gamma", lc.gamma, lc.gamma_interval, (0.0,))
    for i, band in enumerate(lc.band):
        yield Quantity(f"learning_curve.band[{i}]", band.loss, band.interval, LOSS_LIMITS)
    if report.model_size is not None:
        yield Quantity("model_size.beta", report.model_size.beta, report.model_size.beta_interval)
    for i, p in enumerate(report.predictions):
        yield Quantity(f"predictions[{i}]", p.loss, p.interval, LOSS_LIMITS)
        yield Quantity(f"predictions[{i}].curve_loss", p.curve_loss, p.parametric_interval,
                       LOSS_LIMITS)  # fmt: skip
    t = report.data_for_target
    if t is not None:
        yield Quantity("data_for_target", None if t.data_size is None else float(t.data_size),
                       t.interval)  # fmt: skip
    if report.joint is not None:
        for key, limits in JOINT_LIMITS.items():
            yield Quantity(f"joint.{key}", getattr(report.joint, key),
                           report.joint.intervals.get(key), limits)  # fmt: skip
        co = report.joint.compute_optimal
        yield Quantity("joint.compute_optimal.a", co.a, co.a_interval, (0.0, 1.0))
        yield Quantity("joint.compute_optimal.b", co.b, co.b_interval, (0.0, 1.0))
    if report.compute_optimal is not None:
        yield from _compute_optimal_quantities(report.compute_optimal)


def _compute_optimal_quantities(co: ComputeOptimalReport) -> Iterator[Quantity]:
    for i, b in enumerate(co.budgets):
        yield Quantity(f"compute_optimal.budgets[{i}]", b.best_parameters, b.interval)
    for name, pair in (("per_budget", co.per_budget), ("joint", co.joint)):
        if pair is not None:
            yield Quantity(f"compute_optimal.{name}.a", pair.a, pair.a_interval)
            yield Quantity(f"compute_optimal.{name}.b", pair.b, pair.b_interval)


def _named(report: FitReport, name: str) -> bool:
    return any(name in w for w in report.warnings)


def _law_problems(report: FitReport) -> Iterator[str]:
    lc = report.learning_curve
    beta = report.verdict("learning_curve.beta")
    unbounded = lc.beta_interval is not None and lc.beta_interval == [None, None]
    if (unbounded or lc.r2_log < R2_MIN) and (beta is None or beta.drawn
                                              or not _named(report, "beta_g")):  # fmt: skip
        yield "learning_curve.beta: not identified, yet drawn or not named in a warning"
    ms = report.model_size
    if (ms is not None and ms.beta is not None
            and (ms.beta_interval == [None, None] or contradicted_optima(ms))):  # fmt: skip
        yield "model_size.beta: reported, but not identified by the data"
    for p in report.predictions:
        if lc.gamma > 0 and p.loss < lc.gamma and not _named(report, f"m = {p.data_size:g}"):
            yield f"predictions at {p.data_size:g}: below the fitted floor without a word"
    t = report.data_for_target
    if t is not None and lc.gamma > 0 and t.target_loss <= lc.gamma and t.data_size is not None:
        yield "data_for_target: a finite data size for a target below the fitted floor"


def violations(report: FitReport) -> list[str]:
    """Every invariant the report breaks (empty: it may be written)."""
    found = [problem for q in quantities(report) for problem in interval_problems(q)]
    return found + list(_law_problems(report))


def checked(report: FitReport) -> FitReport:
    """The judged report, after the invariant check; raises InvariantError instead of
    letting a report that breaks one reach any output."""
    judged = judge(report)
    problems = violations(judged)
    if problems:
        raise InvariantError("the fit broke its own honesty check (a bug, please report it): "
                             + "; ".join(problems[:3]))  # fmt: skip
    return judged
