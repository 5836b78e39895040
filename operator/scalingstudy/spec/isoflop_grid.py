"""An IsoFLOP study's cells: each compute budget's model sizes and the data size that
spends it, and whether the budgets can be told apart (their groups)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scalingstudy.spec.design import BUDGET_TOLERANCE_DECADES


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

    def reach_problem(self, budgets: Sequence[float], low: int, high: int) -> str | None:
        """Why the plan cannot answer, or None: the fit must see its budgets as planned
        (`grouping_problem`), and 3 budgets must each train 3 model sizes within dataSizes'
        bounds (the frontier's learning curve and the exponent's interval need them)."""
        grouping = grouping_problem(self.cells)
        if grouping:
            return f"design.computeBudgets: {grouping}"
        counts = {c: sum(1 for x in self.cells if x.compute == c) for c in budgets}
        enough = sum(1 for n in counts.values() if n >= 3)
        if enough >= 3:
            return None
        per_budget = ", ".join(f"C={c:.3g}: {n}" for c, n in counts.items())
        return (
            f"design.computeBudgets: only {enough} budget(s) train 3 or more model sizes with "
            f"a data size D = C / (k N) within dataSizes [{low}, {high}] ({per_budget}); an "
            "IsoFLOP study needs 3: widen dataSizes, or move the budgets or the model sizes"
        )


def isoflop_cells(
    budgets: Sequence[float], k: float, model_sizes: Sequence[int],
    parameters: Mapping[int, float] | None, low: int, high: int,
) -> IsoflopPlan:  # fmt: skip
    """Every (budget, model size) in budget order, D = round(C / (k N)) with N the given
    parameter count (else the size itself); the ones outside [low, high] listed apart."""
    cells, skipped = [], []
    for c in budgets:
        for m in model_sizes:
            n = float(parameters[m]) if parameters else float(m)
            d = round(c / (k * n))
            if low <= d <= high:
                cells.append(IsoflopCell(c, m, n, d))
            else:
                side = "below dataSizes min" if d < low else "above dataSizes max"
                skipped.append(f"C={c:.3g} model size {m}: data size {d} {side} "
                               f"{low if d < low else high}")  # fmt: skip
    return IsoflopPlan(tuple(cells), tuple(skipped))


def group_budgets(computes: Sequence[float]) -> list[list[int]]:
    """Indices grouped by budget: sorted by compute, a new budget where the gap between
    neighbours exceeds BUDGET_TOLERANCE_DECADES. The fit's grouping, and the plan's check
    that its budgets stay apart under it."""
    groups: list[list[int]] = []
    for i in sorted(range(len(computes)), key=lambda i: computes[i]):
        gap = math.log10(computes[i] / computes[groups[-1][-1]]) if groups else math.inf
        if gap <= BUDGET_TOLERANCE_DECADES:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def grouping_problem(cells: Sequence[IsoflopCell]) -> str | None:
    """Why the fit would not see the plan's budgets as planned, or None: it groups trials
    by their compute k N D (D rounded), so two budgets within the tolerance would be one
    (and two that give a model size the same data size would name the same trial twice),
    and a budget whose data sizes are so small that rounding scatters its compute would
    be several."""
    groups = group_budgets([c.parameters * c.data_size for c in cells])  # k cancels
    seen: dict[float, int] = {}
    for g, group in enumerate(groups):
        budgets = sorted({cells[i].compute for i in group})
        if len(budgets) > 1:
            return (f"budgets {', '.join(f'C={c:.4g}' for c in budgets)} would be one budget "
                    "to the fit: their trials' compute k N D (D rounded) lies within "
                    f"{BUDGET_TOLERANCE_DECADES} decades of each other, and equal data sizes "
                    "would name the same trial twice; move the budgets apart")  # fmt: skip
        if seen.setdefault(budgets[0], g) != g:
            return (f"budget C={budgets[0]:.4g} would be several budgets to the fit: its "
                    "data sizes are so small that rounding them scatters its trials' compute "
                    f"k N D by more than {BUDGET_TOLERANCE_DECADES} decades; raise the "
                    "budget or dataSizes.min")  # fmt: skip
    return None
