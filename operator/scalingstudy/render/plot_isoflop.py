"""The IsoFLOP panels: loss against model size per compute budget (the optimum marked),
and the optimum against compute with the fitted line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scalingstudy.fitting import Point
from scalingstudy.fitting.report import ComputeOptimalReport
from scalingstudy.spec.isoflop_grid import group_budgets


def isoflop_curves(ax: Any, points: Sequence[Point], co: ComputeOptimalReport, cmap: Any) -> None:
    """One curve per budget; each optimum a star at the budget's lowest loss (a triangle at
    the edge when it lies beyond the sizes tried)."""
    rows = [p for p in points if p.compute is not None and p.size is not None]
    groups = group_budgets([float(p.compute or 0) for p in rows])
    colours = cmap(np.linspace(0.0, 0.75, max(len(groups), 1)))
    for colour, group in zip(colours, groups, strict=False):
        pts = sorted((rows[i] for i in group), key=lambda p: float(p.size or 0))
        compute = float(np.exp(np.mean(np.log([float(p.compute or 0) for p in pts]))))
        ax.plot([p.size for p in pts], [p.loss for p in pts], "o-", color=colour, ms=3, lw=1,
                label=f"C = {compute:.2g}")  # fmt: skip
        best = next((b for b in co.budgets if abs(np.log(b.compute / compute)) < 0.2), None)
        if best is None:
            continue
        if best.best_parameters is not None:
            ax.plot([best.best_parameters], [best.loss], "*", color=colour, ms=12, mec="black")
        else:
            edge = pts[-1] if best.at_edge == "above" else pts[0]
            ax.plot([edge.size], [edge.loss], ">" if best.at_edge == "above" else "<",
                    color=colour, ms=9, mec="black")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation loss")
    ax.set_title("IsoFLOP curves (star: optimum; arrow: beyond the sizes tried)")
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=8)


def optimum_against_compute(ax: Any, co: ComputeOptimalReport) -> None:
    """N*(C) with its intervals and the per-budget line (through the interior optima)."""
    inside = [b for b in co.budgets if b.best_parameters is not None]
    for b in inside:
        lo, hi = b.interval
        best = float(b.best_parameters or 0)
        err = [[best - (lo if lo is not None else best)], [(hi if hi is not None else best) - best]]
        ax.errorbar([b.compute], [best], yerr=err, fmt="o", color="black", capsize=3)
    pair = co.per_budget
    if pair is not None and inside:
        c = np.array([b.compute for b in inside])
        n = np.array([float(b.best_parameters or 0) for b in inside])
        intercept = float(np.mean(np.log(n) - pair.a * np.log(c)))
        grid = np.geomspace(c.min(), c.max(), 50)
        label = f"N* ~ C^{pair.a:.3f}"
        if co.joint is not None:
            label += f" (joint law: {co.joint.a:.3f})"
        ax.plot(grid, np.exp(intercept) * grid**pair.a, "-", color="C3", label=label)
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute (FLOPs)")
    ax.set_ylabel("compute-optimal parameters")
    ax.set_title("optimum against compute")
    ax.grid(True, which="both", alpha=0.2)
