"""Pruning: stop the trials that cannot win their slot (issue 38; docs/pruning.md).
Pure (no I/O): the local runner and the operator read the trials' curves from their own
logs, call `decide`, and stop what it names. The values (`Competitor`, `Prune`) load
nothing heavy; the rule and its forecast (numpy) load at their first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from scalingstudy.pruning.decision import Competitor, Prune

if TYPE_CHECKING:
    from scalingstudy.pruning.calibration import Calibration, calibrate
    from scalingstudy.pruning.curvefit import Forecast, forecast
    from scalingstudy.pruning.rule import decide, study_calibration

_LAZY = {
    "Calibration": "calibration",
    "calibrate": "calibration",
    "Forecast": "curvefit",
    "forecast": "curvefit",
    "decide": "rule",
    "study_calibration": "rule",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "Calibration",
    "Competitor",
    "Forecast",
    "Prune",
    "calibrate",
    "decide",
    "forecast",
    "study_calibration",
]
