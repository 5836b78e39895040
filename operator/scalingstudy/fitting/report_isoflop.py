"""The compute-optimal (IsoFLOP) parts of the fit report: each budget's optimum and the
exponents of N* ~ C^a, D* ~ C^b. See `report.py`."""

from __future__ import annotations

from typing import Literal

from scalingstudy.fitting.report_base import OpenInterval, ReportPart


class BudgetOptimum(ReportPart):
    """The best model size at one compute budget."""

    compute: float
    """The budget (FLOPs per trial; the geometric mean of its trials' compute)."""
    best_parameters: float | None = None
    """Parameters at the optimum (null: the optimum lies beyond the sizes tried)."""
    interval: OpenInterval
    """Interval of the optimum; an end beyond the sizes tried is null (unbounded)."""
    loss: float
    """Lowest loss trained at this budget."""
    at_edge: Literal["above", "below"] | None = None
    """The optimum lies above the largest or below the smallest model size tried."""


class ExponentPair(ReportPart):
    """Exponents of N* ~ C^a and D* ~ C^b (b = 1 - a, as D = C / (k N))."""

    a: float
    """Model-size exponent."""
    a_interval: OpenInterval
    """Its interval (null ends: not bounded by the data)."""
    b: float
    """Data-size exponent."""
    b_interval: OpenInterval
    """Its interval."""

    @classmethod
    def of(cls, a: float, interval: list[float | None]) -> ExponentPair:
        lo, hi = interval
        b_interval = [None if hi is None else 1 - hi, None if lo is None else 1 - lo]
        return cls(a=a, a_interval=[lo, hi], b=1 - a, b_interval=b_interval)

    def overlaps(self, other: ExponentPair) -> bool:
        """Whether the two intervals of a share a value (an open end reaches anything)."""
        inf = float("inf")
        lo = max(-inf if v is None else v for v in (self.a_interval[0], other.a_interval[0]))
        hi = min(inf if v is None else v for v in (self.a_interval[1], other.a_interval[1]))
        return lo <= hi


class ComputeOptimalReport(ReportPart):
    """How to split a compute budget between model size and data (IsoFLOP trials)."""

    model_size_exponent: float | None = None
    """a of N* ~ C^a (the method's estimate; null when neither method gives one)."""
    model_size_exponent_interval: OpenInterval | None = None
    """Its interval."""
    data_size_exponent: float | None = None
    """b of D* ~ C^b."""
    data_size_exponent_interval: OpenInterval | None = None
    """Its interval."""
    method: Literal["per-budget", "joint", "none"]
    """Which estimate the exponents above are: per-budget optima (approach 2), else the
    joint law (approach 3)."""
    budgets: list[BudgetOptimum]
    """The optimum of each budget."""
    per_budget: ExponentPair | None = None
    """The line through the budgets' optima (null: fewer than 2 interior optima)."""
    joint: ExponentPair | None = None
    """The exponents the joint law L(N, D) implies (null: not identified)."""
    flops_per_parameter_per_item: float
    """k of C = k N D."""
