"""The trials of an IsoFLOP study: for each compute budget C and each model size, the
data size that spends C, D = C / (k N). Pure; the plan, the fit's input and the dry run
use it, so both executors train the same trials, and the fit reads N as the plan did."""

from __future__ import annotations

from collections.abc import Iterable

from scalingstudy.spec import ScalingStudySpec
from scalingstudy.spec.isoflop_grid import IsoflopCell, IsoflopPlan, isoflop_cells

__all__ = [
    "PARAMETER_TOLERANCE",
    "IsoflopCell",
    "IsoflopPlan",
    "compute_of",
    "fit_parameters",
    "isoflop_plan",
    "parameter_warnings",
    "parameters_of",
    "planned_parameters",
]

#: A trainer's reported parameter count this far (relative) from the planned one is a
#: warning: D was planned with the one, the report would be read with the other.
PARAMETER_TOLERANCE = 0.05


def parameters_of(spec: ScalingStudySpec, model_size: int) -> float:
    """N of a model size: modelSizes.parameters, else the built-in task's count, else the
    size itself (a custom trainer's knob taken as its parameter count)."""
    counts = spec.parameter_counts()
    return float(counts[model_size]) if counts else float(model_size)


def planned_parameters(spec: ScalingStudySpec) -> dict[int, float]:
    """The parameter counts the spec fixes: modelSizes.parameters when listed, and for an
    IsoFLOP study the built-in task's counts too (the N its data sizes were planned
    with; the knob itself for a trainer of its own, as `compute_of` planned with it).
    Empty where the spec says nothing (the trainer's report is then N)."""
    listed = spec.model_sizes.parameter_map()
    if listed is not None:
        return listed
    if not spec.design.isoflop:
        return {}
    # An IsoFLOP study's data sizes were planned with these N (the knob itself for a
    # trainer of its own): the fit uses the same, and a reported count that differs is
    # a warning, never a silent change of N.
    return spec.parameter_counts() or {m: float(m) for m in spec.model_sizes.sizes()}


def fit_parameters(
    planned: dict[int, float], model_size: int, reported: float | None
) -> float | None:
    """N the fit uses for a trial: the planned count where the spec fixes one (a width is
    never taken for N when the trainer reports no count), else the trainer's report."""
    return planned.get(model_size, reported)


def parameter_warnings(
    planned: dict[int, float], reported: Iterable[tuple[int, float | None]]
) -> list[str]:
    """One warning per model size whose reported parameter count differs from the
    planned one by more than PARAMETER_TOLERANCE (the first such report of that size)."""
    out: list[str] = []
    warned: set[int] = set()
    for model_size, count in reported:
        n = planned.get(model_size)
        if n is None or count is None or model_size in warned:
            continue
        if abs(count - n) > PARAMETER_TOLERANCE * n:
            warned.add(model_size)
            out.append(
                f"model size {model_size}: the trainer reports {count:,.0f} parameters, the "
                f"spec {n:,.0f} ({abs(count / n - 1):.0%} apart); the fit uses the spec's "
                "count (the one D was planned with): check modelSizes.parameters"
            )
    return out


def isoflop_plan(spec: ScalingStudySpec) -> IsoflopPlan:
    """Every (budget, model size) in budget order; the ones out of bounds listed apart."""
    budgets = spec.design.compute_budgets
    assert budgets is not None, "isoflop_plan needs design.computeBudgets"
    sizes = spec.data_sizes.sizes()
    return isoflop_cells(budgets.sizes(), spec.design.flops_per_parameter_per_item,
                         spec.model_sizes.sizes(), spec.parameter_counts(),
                         sizes[0], sizes[-1])  # fmt: skip


def compute_of(spec: ScalingStudySpec, data_size: int, model_size: int) -> float:
    """The FLOPs a trial spends, C = k N D (its budget, up to the rounding of D)."""
    return spec.design.flops_per_parameter_per_item * parameters_of(spec, model_size) * data_size
