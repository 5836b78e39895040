"""The trials of an IsoFLOP study: for each compute budget C and each model size, the
data size that spends C, D = C / (k N). Pure; the plan, the fit's input and the dry run
use it, so both executors train the same trials."""

from __future__ import annotations

from dataclasses import dataclass

from scalingstudy.spec import ScalingStudySpec


@dataclass(frozen=True)
class IsoflopCell:
    compute: float
    model_size: int
    parameters: float
    data_size: int


@dataclass(frozen=True)
class IsoflopPlan:
    cells: tuple[IsoflopCell, ...]
    #: Cells whose data size falls outside dataSizes' bounds, with why.
    skipped: tuple[str, ...]


def parameters_of(spec: ScalingStudySpec, model_size: int) -> float:
    """N of a model size: modelSizes.parameters, else the size itself (a custom trainer's
    knob taken as its parameter count)."""
    given = spec.model_sizes.parameter_map()
    return float(given[model_size]) if given else float(model_size)


def isoflop_plan(spec: ScalingStudySpec) -> IsoflopPlan:
    """Every (budget, model size) in budget order; the ones out of bounds listed apart."""
    budgets = spec.design.compute_budgets
    assert budgets is not None, "isoflop_plan needs design.computeBudgets"
    k = spec.design.flops_per_parameter_per_item
    sizes = spec.data_sizes.sizes()
    low, high = sizes[0], sizes[-1]
    cells, skipped = [], []
    for c in budgets.sizes():
        for m in spec.model_sizes.sizes():
            n = parameters_of(spec, m)
            d = round(c / (k * n))
            if low <= d <= high:
                cells.append(IsoflopCell(c, m, n, d))
            else:
                side = "below dataSizes min" if d < low else "above dataSizes max"
                skipped.append(f"C={c:.3g} model size {m}: data size {d} {side} "
                               f"{low if d < low else high}")  # fmt: skip
    return IsoflopPlan(tuple(cells), tuple(skipped))


def compute_of(spec: ScalingStudySpec, data_size: int, model_size: int) -> float:
    """The FLOPs a trial spends, C = k N D (its budget, up to the rounding of D)."""
    return spec.design.flops_per_parameter_per_item * parameters_of(spec, model_size) * data_size
