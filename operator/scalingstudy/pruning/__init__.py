"""Pruning: stop the trials that cannot win their slot (issue 38; docs/pruning.md).
Pure (no I/O): the local runner and the operator read the trials' curves from their own
logs, call `decide`, and stop what it names."""

from scalingstudy.pruning.calibration import Calibration, calibrate
from scalingstudy.pruning.curvefit import Forecast, forecast
from scalingstudy.pruning.rule import Competitor, Prune, decide, study_calibration

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
