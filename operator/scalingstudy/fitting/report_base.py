"""The base of the fit report's parts: one frozen model class with the two views (the
`scalingstudy fit --json` contract and the status's camelCase view), the interval types,
and the verdict on a quantity (`verdict.py`). See `report.py`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

#: Data sizes and counts are ints in the JSON when they are whole.
Number = int | float
Interval = list[float]
#: An interval whose ends may be None: not bounded by the data on that side ("unbounded").
OpenInterval = list[float | None]


class ReportPart(BaseModel):
    """Frozen, with a camelCase alias per field for the status view; unknown keys (from a
    newer engine) are ignored rather than fatal."""

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="ignore",
    )

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON (snake_case keys, optional fields only where set)."""
        return self.model_dump(exclude_unset=True)

    def to_status(self) -> dict[str, Any]:
        """The status view: camelCase keys, without empty fields."""
        return self.model_dump(by_alias=True, exclude_none=True)


VerdictStatus = Literal["measured", "bounded-below", "bounded-above", "not-identified"]


class Verdict(ReportPart):
    """What the data say about one reported quantity (`verdict.py` decides it once; every
    output renders it): measured (an interval bounded on both sides), bounded on one side
    only, or not identified (no end bounded, or a law that explains almost nothing)."""

    quantity: str
    """The quantity's path in the report, e.g. learning_curve.beta or joint.alpha_N."""
    status: VerdictStatus
    """measured, bounded-below, bounded-above or not-identified."""
    drawn: bool
    """Whether a plot may draw it as a line (a law nothing bounds is shown as points only)."""
    reason: str | None = None
    """Why it is not measured and what to add, or how its interval was corrected (null
    when the fit's interval stands as it is)."""
