"""The fit report as a readable table: what `scalingstudy fit` and `scalingstudy run`
print, and the numbers in the operator's Events."""

from __future__ import annotations

from collections.abc import Sequence

from scalingstudy.fitting.report import (
    ComputeOptimalReport,
    DataForTarget,
    FitReport,
    JointLawReport,
    ModelSizeLaw,
)
from scalingstudy.status import DesignStatus
from scalingstudy.words import plural


def short(value: float | None, digits: int = 4) -> str:
    """A number to ``digits`` significant digits; - for none."""
    return "-" if value is None else f"{value:.{digits}g}"


def _end(value: float | None, digits: int) -> str:
    return "unbounded" if value is None else f"{value:.{digits}g}"


def _bracketed(values: Sequence[float | None] | None, digits: int = 3) -> str:
    """An interval; an open end (the data do not bound it) reads "unbounded"."""
    if not values:
        return ""
    lo, hi = values
    return f" [{_end(lo, digits)}, {_end(hi, digits)}]"


def _model_size_lines(ms: ModelSizeLaw) -> list[str]:
    unit = "parameters" if ms.unit == "parameters" else "model_size"
    if ms.beta is None:
        return [f"Model size: beta_p = null: {ms.reason}"]
    lines = [
        f"Model size: {unit} = {short(ms.alpha)} * m^{ms.beta:.4f}"
        f"   beta_p = {ms.beta:.4f}{_bracketed(ms.beta_interval, 4)}"
    ]
    if ms.method.startswith("continuous"):
        censored = sum(1 for e in ms.estimates if e.censored)
        lines.append(
            f"  (continuous optimum, {censored} censored; best grid points give {ms.grid_beta:.4f})"
        )
    return lines


def _target_line(fit: FitReport, target: DataForTarget) -> str:
    """The data for the target as the verdict has it: a size, or why there is none."""
    lo, hi = target.interval or (None, None)
    ends = f" [{_end(lo, 4)}, {_end(hi, 4)}]" if target.interval else ""
    if target.data_size is None:
        verdict = fit.verdict("data_for_target")
        why = verdict.reason if verdict and verdict.reason else "the prediction never reaches it"
        return f"Data for target loss {target.target_loss:g}: no estimate ({why}){ends}"
    return f"Data for target loss {target.target_loss:g}: {target.data_size:g}{ends}"


def _plural(count: int | None, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _prediction_lines(fit: FitReport) -> list[str]:
    lc, ex = fit.learning_curve, fit.extrapolation
    conf = round(100 * lc.confidence)
    lines = []
    for i, p in enumerate(fit.predictions):
        kind = f"{conf}% prediction interval; " if p.interval else "no interval; "
        lines.append(
            f"Predicted loss at m = {p.data_size:g}: {p.loss:.5g}"
            f"{_bracketed(p.interval, 4)} ({kind}"
            f"{p.distance_ratio:.3g}x the largest data size, form {p.form or lc.form})"
        )
        verdict = fit.verdict(f"predictions[{i}]")
        if verdict is not None and verdict.status == "not-identified" and verdict.reason:
            lines.append(f"  interval not identified: {verdict.reason}")
        if p.note:
            lines.append(f"  {p.note}")
    if fit.predictions and ex.reach_ratio:
        lines.append(
            f"  intervals from a backtest over {_plural(ex.origins, 'origin')} "
            f"(reach {ex.reach_ratio:.3g}x, noise {ex.noise_sigma_log:.3g} in log loss)"
        )
    return lines


def _joint_line(joint: JointLawReport) -> str:
    co, iv = joint.compute_optimal, joint.intervals
    exponents = "  ".join(f"{name}{_bracketed(iv[name])}" for name in ("alpha_N", "beta_D")
                          if iv.get(name))  # fmt: skip
    return (
        f"Joint fit: L(N, D) = {joint.E:.4g} + {joint.A:.4g}/N^{joint.alpha_N:.4f}"
        f" + {joint.B:.4g}/D^{joint.beta_D:.4f}{'   ' + exponents if exponents else ''}\n"
        f"  compute-optimal N ~ C^{co.a:.3f}{_bracketed(co.a_interval)}, "
        f"D ~ C^{co.b:.3f}{_bracketed(co.b_interval)}"
    )


def format_fit(fit: FitReport) -> str:
    """The fit as a readable table."""
    lc = fit.learning_curve
    conf = round(100 * lc.confidence)
    lines = [
        f"Learning curve ({lc.form}): loss = {short(lc.alpha)} * m^{lc.beta:.4f}"
        f" + {short(lc.gamma)}",
        f"  beta_g = {lc.beta:.4f}{_bracketed(lc.beta_interval, 4)}"
        f"{f' ({conf}% CI)' if lc.beta_interval else ''}   R^2(log) = {lc.r2_log:.4f}"
        f"   points = {lc.n_points}   power-law range = {lc.power_law_range}",
    ]
    for o in lc.outliers:
        lines.append(
            f"  outlier left out: m = {o.data_size:g}, loss {o.loss:.5g} "
            f"({o.residual_sd:+.1f} robust SDs); beta_g with it: {short(lc.beta_with_outliers)}"
        )
    if fit.model_size:
        lines += _model_size_lines(fit.model_size)
    lines.append("Best model per data size:")
    lines.append(f"  {'data_size':>12} {'model_size':>11} {'parameters':>11} {'loss':>10}")
    for b in fit.best:
        lines.append(
            f"  {b.data_size:>12g} {short(b.model_size):>11} {short(b.parameters):>11}"
            f" {b.loss:>10.5g}"
        )
    lines += _prediction_lines(fit)
    if fit.data_for_target:
        lines.append(_target_line(fit, fit.data_for_target))
    if fit.joint:
        lines.append(_joint_line(fit.joint))
    if fit.compute_optimal:
        lines += compute_optimal_lines(fit.compute_optimal)
    # A reason already printed beside its quantity is not repeated as a warning.
    shown = {fit.model_size.reason} if fit.model_size and fit.model_size.beta is None else set()
    lines += [f"warning: {w}" for w in fit.warnings if w not in shown]
    return "\n".join(lines)


def compute_optimal_lines(co: ComputeOptimalReport) -> list[str]:
    """Both estimates of N* ~ C^a, D* ~ C^b, and each budget's optimum."""
    lines = [f"Compute-optimal allocation (C = {co.flops_per_parameter_per_item:g} N D):"]
    for name, pair in (("per budget", co.per_budget), ("joint law", co.joint)):
        if pair is None:
            lines.append(f"  {name:<10}  no estimate (see warnings)")
            continue
        lines.append(f"  {name:<10}  N* ~ C^{pair.a:.3f}{_bracketed(pair.a_interval)}"
                     f"   D* ~ C^{pair.b:.3f}{_bracketed(pair.b_interval)}")  # fmt: skip
    lines.append(f"  {'compute':>12} {'best parameters':>16} {'interval':>26} {'loss':>10}")
    for b in co.budgets:
        best = short(b.best_parameters) if b.best_parameters else f"edge ({b.at_edge})"
        lines.append(f"  {b.compute:>12.4g} {best:>16} {_bracketed(b.interval):>26}"
                     f" {b.loss:>10.5g}")  # fmt: skip
    return lines


def design_line(d: DesignStatus) -> str:
    """What an adaptive study chose and spent, in one line, in the device its trials
    request (GPU-seconds, or CPU-seconds for a study without GPUs)."""
    spent, grid_s = d.device_seconds, d.grid_device_seconds
    grid = f" of the full grid's estimated {grid_s:.0f}" if grid_s else ""
    return (
        f"design {d.strategy}: {plural(d.trials_started, 'trial')} started, "
        f"{d.trials_skipped} of the grid's {d.grid_trials} skipped; {spent:.0f} "
        f"{d.device.upper()}-seconds ({d.spend or '?'}{grid}); stopped: {d.stop_reason or 'no'}"
    )


def learning_rate_lines(d: DesignStatus) -> list[str]:
    """The winning learning rate per cell of a sweep, and a warning for winners at the
    sweep's edge."""
    if not d.learning_rates:
        return []
    lines = ["Best learning rate per (data size, model size):"]
    for c in d.learning_rates:
        edge = "  (edge)" if c.at_edge else ""
        lines.append(f"  {c.data_size:>10}  {c.model_size:>10}  {c.learning_rate:g}{edge}")
    at_edge = sum(c.at_edge for c in d.learning_rates)
    if at_edge:
        lines.append(
            f"warning: the best learning rate is at the edge of the sweep in {at_edge} of "
            f"{len(d.learning_rates)} cells: the optimum may lie beyond; widen learningRates"
        )
    return lines
