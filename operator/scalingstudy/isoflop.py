"""The trials of an IsoFLOP study: for each compute budget C and each model size, the
data size that spends C, D = C / (k N). Pure; the plan, the fit's input and the dry run
use it, so both executors train the same trials."""

from __future__ import annotations

from scalingstudy.spec import ScalingStudySpec
from scalingstudy.spec.design import IsoflopCell, IsoflopPlan, isoflop_cells

__all__ = ["IsoflopCell", "IsoflopPlan", "compute_of", "isoflop_plan", "parameters_of"]


def parameters_of(spec: ScalingStudySpec, model_size: int) -> float:
    """N of a model size: modelSizes.parameters, else the built-in task's count, else the
    size itself (a custom trainer's knob taken as its parameter count)."""
    counts = spec.parameter_counts()
    return float(counts[model_size]) if counts else float(model_size)


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
