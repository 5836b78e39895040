"""Fitting the scaling laws of Hestness et al. (2017): pure numpy/scipy, no I/O.

`Point`, `FitOptions` and `FitError` import without numpy; `fit_points` loads the
numerical engine on first use, so code that only builds fit inputs stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scalingstudy.fitting.options import FitOptions
from scalingstudy.fitting.points import (
    BestPoint,
    FitError,
    FitUnavailableError,
    Point,
    best_per_data_size,
)

if TYPE_CHECKING:
    from scalingstudy.fitting.engine import fit_points

__all__ = [
    "BestPoint",
    "FitError",
    "FitOptions",
    "FitUnavailableError",
    "Point",
    "best_per_data_size",
    "fit_points",
]


def __getattr__(name: str) -> Any:
    if name == "fit_points":
        from scalingstudy.fitting.engine import fit_points

        return fit_points
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
