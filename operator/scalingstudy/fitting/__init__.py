"""Fitting the scaling laws of Hestness et al. (2017): pure numpy/scipy, no I/O."""

from scalingstudy.fitting.engine import FitOptions, fit_points
from scalingstudy.fitting.points import BestPoint, FitError, Point, best_per_data_size

__all__ = ["BestPoint", "FitError", "FitOptions", "Point", "best_per_data_size", "fit_points"]
