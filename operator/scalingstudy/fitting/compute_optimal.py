"""Compute-optimal allocation from IsoFLOP trials: for each compute budget C the model
size N*(C) that reaches the lowest loss, and the exponents of N* ~ C^a and D* ~ C^b.

Two estimates, side by side, because each fails differently:
- *per budget* (Hoffmann et al. 2022, approach 2): at each budget log loss against
  log N is fitted by a parabola through the lowest trial and up to 3 trials each side,
  its vertex is N*(C), and a line through (log C, log N*) gives a. The vertex's
  interval comes from a residual bootstrap. A vertex outside the model sizes tried is
  no estimate: that budget's interval is open on that side, it is left out of the
  line, and a warning says which model sizes to add.
- *joint* (approach 3): L(N, D) = E + A/N^alpha + B/D^beta over every trial (the
  project's variable-projection fit), which implies a = beta / (alpha + beta).

With D = C / (k N) for every trial, b = 1 - a for the per-budget estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scalingstudy.fitting.curve import Array
from scalingstudy.fitting.joint import bootstrap_joint, fit_joint, joint_report, unidentified
from scalingstudy.fitting.options import FitOptions
from scalingstudy.fitting.points import FitError, Point
from scalingstudy.fitting.report import (
    BudgetOptimum,
    ComputeOptimalReport,
    ExponentPair,
    JointLawReport,
)

# One grouping of trials into budgets: the plan refuses budgets it would merge.
from scalingstudy.spec.design import BUDGET_TOLERANCE_DECADES
from scalingstudy.spec.isoflop_grid import group_budgets

#: Trials each side of the lowest one that the parabola of a budget is fitted to: far
#: from the optimum the loss is not a parabola in log N, and its vertex would follow
#: the far points (the bias of approach 2 on noise-free data).
NEIGHBOURS = 3


@dataclass(frozen=True)
class IsoPoint:
    compute: float
    parameters: float
    loss: float
    data_size: float


def frontier(computes: Sequence[float], losses: Sequence[float]) -> list[int]:
    """The index of each budget's lowest loss: the compute-optimal frontier as trained."""
    return [min(g, key=lambda i: losses[i]) for g in group_budgets(computes)]


@dataclass(frozen=True)
class _Budget:
    compute: float
    x: Array  # log N of the points near the optimum
    y: Array  # their log loss
    lowest: IsoPoint


def _near_optimum(group: Sequence[IsoPoint]) -> _Budget:
    ordered = sorted(group, key=lambda p: p.parameters)
    best = min(range(len(ordered)), key=lambda i: ordered[i].loss)
    lo, hi = max(best - NEIGHBOURS, 0), min(best + NEIGHBOURS + 1, len(ordered))
    # Keep at least 2 * NEIGHBOURS + 1 points where the budget has them.
    width = 2 * NEIGHBOURS + 1
    if hi - lo < width:
        lo, hi = max(min(lo, len(ordered) - width), 0), min(max(hi, width), len(ordered))
    near = ordered[lo:hi]
    compute = float(np.exp(np.mean(np.log([p.compute for p in group]))))
    return _Budget(compute, np.log([p.parameters for p in near]),
                   np.log([p.loss for p in near]), ordered[best])  # fmt: skip


def _vertex(x: Array, y: Array) -> float:
    """log N at the parabola's minimum; -inf / +inf when the fitted minimum lies at or
    beyond the smallest / largest x (no vertex inside the sizes tried)."""
    centre = float(np.mean(x))
    c2, c1, _ = np.polyfit(x - centre, y, 2)
    lo, hi = float(x.min()), float(x.max())
    if c2 <= 0:
        ends = np.polyval([c2, c1, 0.0], np.array([lo, hi]) - centre)
        return -np.inf if ends[0] <= ends[1] else np.inf
    v = centre - c1 / (2 * c2)
    return -np.inf if v <= lo else np.inf if v >= hi else float(v)


def _vertex_draws(b: _Budget, replicates: int, rng: np.random.Generator) -> Array:
    """The vertex refitted on fitted values plus resampled residuals (scaled for the 3
    fitted coefficients)."""
    centre = float(np.mean(b.x))
    coeffs = np.polyfit(b.x - centre, b.y, 2)
    fitted = np.polyval(coeffs, b.x - centre)
    resid = (b.y - fitted) * np.sqrt(len(b.x) / max(len(b.x) - 3, 1))
    out = np.empty(replicates)
    for r in range(replicates):
        out[r] = _vertex(b.x, np.asarray(fitted + rng.choice(resid, len(resid)), dtype=float))
    return out


def _quantiles(draws: Array, confidence: float) -> list[float | None]:
    """The central interval; an end in the infinite draws is open (None). Draws without
    spread (a fit through as many points as it has coefficients, or noise-free data)
    measure no uncertainty: both ends are open, never a zero-width interval; so do no
    draws at all (bootstrap 0)."""
    if len(draws) == 0:
        return [None, None]
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(draws, [tail, 1 - tail])
    if np.isfinite(lo) and np.isfinite(hi) and hi - lo <= 1e-9 * max(abs(lo), abs(hi), 1.0):
        return [None, None]
    return [None if not np.isfinite(lo) else float(lo), None if not np.isfinite(hi) else float(hi)]


def _slope(log_c: Array, log_n: Array) -> float:
    return float(np.polyfit(log_c, log_n, 1)[0])


def per_budget(
    points: Sequence[IsoPoint], confidence: float, replicates: int, seed: int,
    warnings: list[str],
) -> tuple[list[BudgetOptimum], ExponentPair | None]:  # fmt: skip
    """Each budget's optimum and the exponents of the line through the interior ones."""
    rng = np.random.default_rng(seed)
    optima: list[BudgetOptimum] = []
    inside: list[tuple[_Budget, float, Array]] = []  # budget, log N*, vertex draws
    groups = [[points[i] for i in g] for g in group_budgets([p.compute for p in points])]
    spread = max(np.log10(g[-1].compute / g[0].compute) for g in groups)
    if spread > 2 * BUDGET_TOLERANCE_DECADES:
        warnings.append(
            f"the trials' compute does not form budgets (one group spans {spread:.2f} "
            "decades): no per-budget optima; the joint law's exponents stand alone"
        )
        return optima, None
    for group in groups:
        if len({p.parameters for p in group}) < 3:
            warnings.append(f"compute {group[0].compute:.3g}: fewer than 3 model sizes, no "
                            "optimum (IsoFLOP needs at least 3 per budget)")  # fmt: skip
            continue
        b = _near_optimum(group)
        v = _vertex(b.x, b.y)
        # Three sizes fix the parabola exactly: no residual is left to measure noise with.
        draws = (_vertex_draws(b, replicates, rng) if len(b.x) > 3
                 else np.full(replicates, np.nan))  # fmt: skip
        if np.isfinite(v):
            lo, hi = _quantiles(draws, confidence)
            interval = [None if lo is None else float(np.exp(lo)),
                        None if hi is None else float(np.exp(hi))]  # fmt: skip
            optima.append(BudgetOptimum(compute=b.compute, best_parameters=float(np.exp(v)),
                                        interval=interval, loss=b.lowest.loss))  # fmt: skip
            inside.append((b, v, draws))
            continue
        side = "larger" if v > 0 else "smaller"
        warnings.append(f"the optimum at C = {b.compute:.3g} lies at the edge of its model sizes "
                        f"(best tried: {b.lowest.parameters:.3g} parameters): add {side} model "
                        f"sizes at C = {b.compute:.3g}")  # fmt: skip
        open_interval = ([float(b.lowest.parameters), None] if v > 0
                         else [None, float(b.lowest.parameters)])  # fmt: skip
        optima.append(BudgetOptimum(compute=b.compute, best_parameters=None,
                                    interval=open_interval, loss=b.lowest.loss,
                                    at_edge="above" if v > 0 else "below"))  # fmt: skip
    if len(inside) < 2:
        warnings.append(f"compute-optimal exponents (per budget) need 2 budgets with an "
                        f"optimum inside their model sizes (got {len(inside)})")  # fmt: skip
        return optima, None
    log_c = np.log([b.compute for b, _, _ in inside])
    a = _slope(log_c, np.array([v for _, v, _ in inside]))
    draws = np.stack([d for _, _, d in inside])  # budgets x replicates
    slopes = [
        _slope(log_c[ok], draws[ok, r]) if (ok := np.isfinite(draws[:, r])).sum() >= 2 else np.nan
        for r in range(draws.shape[1])
    ]
    valid = np.array([s for s in slopes if np.isfinite(s)])
    interval = _quantiles(valid, confidence) if len(inside) >= 3 and len(valid) else [None, None]
    if moved := _one_trial_moves([(b, v) for b, v, _ in inside], log_c, a, interval):
        warnings.append(moved)
    return optima, ExponentPair.of(a, interval)


#: A single trial's pull on the per-budget exponent below this is never worth a warning
#: (exponents are quoted to two decimals; noise alone moves them this much).
MIN_MOVE = 0.05


def _one_trial_moves(
    budgets: list[tuple[_Budget, float]], log_c: Array, a: float, interval: list[float | None]
) -> str | None:
    """A warning when leaving out one trial moves the per-budget exponent by more than
    its interval's half-width (0.1 when the interval is open) and MIN_MOVE: it rests on
    that trial (the brief's "one outlier moved it 6x without a warning")."""
    lo, hi = interval
    allowed = max((hi - lo) / 2 if lo is not None and hi is not None else 0.1, MIN_MOVE)
    vertices = [v for _, v in budgets]
    worst: tuple[float, str] | None = None
    for i, (b, _) in enumerate(budgets):
        if len(b.x) <= 4:  # without one, three or fewer points: no noise left to judge by
            continue
        for j in range(len(b.x)):
            keep = np.arange(len(b.x)) != j
            v = _vertex(b.x[keep], b.y[keep])
            if not np.isfinite(v):  # an end point gone: the curvature, not the trial
                continue
            shift = abs(_slope(log_c, np.array([*vertices[:i], v, *vertices[i + 1 :]])) - a)
            if shift > allowed and (worst is None or shift > worst[0]):
                trial = f"the trial at C = {b.compute:.3g}, N = {np.exp(b.x[j]):.3g}"
                worst = (shift, f"compute-optimal exponent (per budget) {a:.3f} rests on one "
                                f"trial: leaving out {trial} moves it by {shift:.3f}, more "
                                "than half its interval; check that trial, or add model "
                                "sizes around that budget's optimum")  # fmt: skip
    return None if worst is None else worst[1]


def joint_exponents(
    n: Array, d: Array, loss: Array, confidence: float, replicates: int, seed: int,
    warnings: list[str],
) -> ExponentPair | None:  # fmt: skip
    """a = beta / (alpha + beta) of the joint law, its interval from the law's bootstrap."""
    law = fit_joint(n, d, loss)
    problem = unidentified(law)
    if problem is not None:
        warnings.append(f"compute-optimal exponents (joint) not reported: {problem}")
        return None
    draws = bootstrap_joint(n, d, loss, law, replicates, np.random.default_rng(seed))
    a_draws = np.array([s.beta / (s.alpha + s.beta) for s in draws])
    return ExponentPair.of(law.compute_optimal["a"], _quantiles(a_draws, confidence))


def pair_of(law: JointLawReport | None) -> ExponentPair | None:
    """The exponents a joint law implies, with its bootstrap interval (a zero-wide one,
    from noise-free trials, is no interval: both ends open, as `_quantiles` says)."""
    if law is None:
        return None
    lo, hi = law.compute_optimal.a_interval or [None, None]
    if lo is not None and hi is not None and hi - lo <= 1e-9 * max(abs(lo), abs(hi), 1.0):
        lo = hi = None
    return ExponentPair.of(law.compute_optimal.a, [lo, hi])


def compute_optimal(
    points: Sequence[IsoPoint], flops_per_parameter_per_item: float, confidence: float,
    replicates: int, seed: int, warnings: list[str], joint_replicates: int | None = None,
    joint_law: JointLawReport | bool | None = True,
) -> ComputeOptimalReport | None:  # fmt: skip
    """Both estimates, and a warning when they disagree beyond their intervals. The joint
    estimate is fitted here (`joint_law` True), or read from the study's joint law over
    the same trials (a JointLawReport; None: that law was not identified), so the two
    never differ."""
    if len(points) < 6:
        warnings.append("compute-optimal analysis skipped: fewer than 6 trials with compute")
        return None
    budgets, by_budget = per_budget(points, confidence, replicates, seed, warnings)
    if joint_law is True:
        n = np.array([p.parameters for p in points])
        d = np.array([p.data_size for p in points])
        loss = np.array([p.loss for p in points])
        joint = joint_exponents(n, d, loss, confidence, joint_replicates or replicates, seed,
                                warnings)  # fmt: skip
    else:
        joint = pair_of(joint_law if isinstance(joint_law, JointLawReport) else None)
    if by_budget and joint and not by_budget.overlaps(joint):
        warnings.append(
            f"the compute-optimal model-size exponent per budget ({by_budget.a:.3f}) and from "
            f"the joint law ({joint.a:.3f}) disagree beyond their intervals: the joint form "
            "may not fit these trials, or the budgets' optima are poorly bracketed"
        )
    main = by_budget or joint
    return ComputeOptimalReport(
        model_size_exponent=main.a if main else None,
        model_size_exponent_interval=main.a_interval if main else None,
        data_size_exponent=main.b if main else None,
        data_size_exponent_interval=main.b_interval if main else None,
        method="per-budget" if by_budget else "joint" if joint else "none",
        budgets=budgets,
        per_budget=by_budget,
        joint=joint,
        flops_per_parameter_per_item=flops_per_parameter_per_item,
    )


@dataclass(frozen=True)
class IsoflopFit:
    """What the fit of IsoFLOP trials is made of: the compute-optimal analysis, the
    study's joint law L(N, D) over every trial, and the points the learning curve and
    the model-size law are fitted to (each budget's best trial, in data-size order)."""

    compute_optimal: ComputeOptimalReport | None
    #: Over every trial (None unless options.joint, or when the law is not identified):
    #: the frontier has one trial per budget, too few for five parameters.
    joint: JointLawReport | None
    frontier: list[Point]


def isoflop_fit(points: Sequence[Point], options: FitOptions, warnings: list[str]) -> IsoflopFit:
    """The compute-optimal analysis of IsoFLOP trials and the study's joint law, both over
    every trial; the frontier for the rest of the fit (at one budget every trial has its
    own data size, so "the best model per data size" is only meaningful along it)."""
    if any(p.compute is None or p.size is None for p in points):
        raise FitError("with a compute column every point needs compute and a model size "
                       "or parameter count")  # fmt: skip
    iso = [IsoPoint(float(p.compute or 0), float(p.size or 0), p.loss, p.data_size)
           for p in points]  # fmt: skip
    # One joint fit: the study's law over every trial gives the exponents too.
    joint = joint_report(points, options, warnings) if options.joint else None
    report = compute_optimal(
        iso, options.flops_per_parameter_per_item, options.confidence, options.bootstrap,
        options.random_seed, warnings,
        joint_replicates=min(options.bootstrap, options.joint_bootstrap),
        joint_law=joint if options.joint else True,
    )  # fmt: skip
    best = frontier([p.compute for p in iso], [p.loss for p in iso])
    warnings.append(
        f"IsoFLOP trials: the learning curve and the model-size law are fitted to each "
        f"budget's best trial ({len(best)} budgets: the compute-optimal frontier); the "
        f"joint law and the compute-optimal exponents to every trial ({len(points)})"
    )
    ordered = sorted(best, key=lambda i: points[i].data_size)
    return IsoflopFit(report, joint, [points[i] for i in ordered])
