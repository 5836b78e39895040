"""The fit report: one typed value from the engine to the CLI, the plot, the local run's
fit.json and the study's status.

Two views of the same models. ``FitReport.to_json()`` is the `scalingstudy fit --json`
contract (snake_case keys, DESIGN §5, extended with the calibrated intervals); the
operator's status embeds the same parts dumped by alias (camelCase), so a field added
here reaches both, and the CRD's status schema is generated from these classes.

A key is in the JSON exactly when the engine set it (null where it set None): a
prediction's backtest figures exist only with a backtest, ``data_for_target`` only with a
target loss, ``joint`` only when asked for. Parsing the JSON back (`FitReport.from_json`)
restores exactly what was there. The status view leaves nulls out (the API server would
prune them), so every nullable field defaults to None when read back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from scalingstudy.fitting.report_base import (
    Interval,
    Number,
    OpenInterval,
    ReportPart,
    Verdict,
    VerdictStatus,
)
from scalingstudy.fitting.report_isoflop import BudgetOptimum, ComputeOptimalReport, ExponentPair

__all__ = [
    "BudgetOptimum", "ComputeOptimalReport", "ExponentPair", "Interval", "Number",
    "OpenInterval", "ReportPart", "Verdict", "VerdictStatus",
]  # fmt: skip


class BandPoint(ReportPart):
    """A point of the prediction band a plot shades."""

    data_size: float
    """Data size."""
    loss: float
    """Predicted loss there."""
    interval: Interval
    """Prediction interval of the loss there."""


class Outlier(ReportPart):
    """A learning-curve point the fitted curve does not explain."""

    data_size: Number
    """Data size."""
    loss: float
    """Its loss."""
    residual_sd: float
    """Log residual against the curve of the other points, in robust standard deviations
    (positive: above the curve)."""


class LearningCurve(ReportPart):
    """eps(m) = alpha * m**beta + gamma, fitted over the power-law region."""

    form: str
    """power-law or power-law-plus-constant."""
    alpha: float
    """Scale."""
    beta: float
    """Learning-curve exponent beta_g (negative for a falling curve)."""
    gamma: float
    """Irreducible error (0 for the plain power law)."""
    beta_interval: OpenInterval | None = None
    """Confidence interval of beta_g (bootstrap joined with the profile likelihood); a
    null end: the data do not bound beta_g on that side."""
    alpha_interval: OpenInterval | None = None
    """Bootstrap interval of alpha; a null end: not bounded by the data on that side."""
    gamma_interval: OpenInterval | None = None
    """Bootstrap interval of gamma (with the constant only); a null end: not bounded."""
    r2_log: float
    """R^2 in log space over the power-law region."""
    n_points: int
    """Data sizes in the power-law region."""
    power_law_range: list[Number]
    """First and last data size of the power-law region."""
    confidence: float
    """Confidence level of every interval."""
    band: list[BandPoint]
    """The prediction interval along the curve, out to the farthest prediction."""
    outliers: list[Outlier] = Field(default_factory=list)
    """Points far off the curve of the other points: left out of the fit."""
    beta_with_outliers: float | None = None
    """beta_g of the same form with the outliers kept in (only when there are any)."""


class SizeEstimate(ReportPart):
    """The best parameter count at one data size, between the grid's model sizes."""

    data_size: Number
    """Data size."""
    parameters: float
    """Parabola-vertex optimum of the loss over log parameters (or the bound)."""
    censored: Literal["above", "below"] | None = None
    """The optimum lies beyond the grid's largest (above) or smallest (below) model."""
    grid_best: Number
    """Parameters of the best grid point."""


class ModelSizeLaw(ReportPart):
    """s(m) = alpha * m**beta: parameters of the best model per data size."""

    method: str
    """continuous optimum (censored fit), best grid point when optima are too few, or
    not measurable (beta null, see reason)."""
    alpha: float | None = None
    """Scale (null when beta_p is not measurable)."""
    beta: float | None = None
    """Model-size exponent beta_p (null when the data cannot measure it)."""
    beta_interval: OpenInterval | None = None
    """Confidence interval of beta_p; a null end: not bounded by the data on that side."""
    reason: str | None = None
    """Why beta_p is null, and what to add."""
    unit: Literal["parameters", "model_size"] = "parameters"
    """What the law is fitted to: parameter counts, or the size knob when none were given."""
    grid_beta: float
    """beta_p through the best grid point per data size (the step-function estimate)."""
    r2_log: float
    """R^2 in log space of the best-grid-point law."""
    estimates: list[SizeEstimate]
    """Best parameter count per data size; censored ones are bounds."""


class BestModel(ReportPart):
    """The best model at one data size (mean over its seeds)."""

    data_size: Number
    """Data size."""
    model_size: Number | None = None
    """Model-size knob of the best model (null without model sizes)."""
    loss: float
    """Its loss."""
    parameters: Number | None = None
    """Its parameter count, when reported."""
    seeds: int
    """Seeds averaged."""


class ModelSizeCurve(ReportPart):
    """The learning curve of one model size alone."""

    model_size: Number
    """Model-size knob."""
    alpha: float
    """Scale."""
    beta: float
    """Exponent."""
    gamma: float
    """Constant."""
    n_points: int
    """Data sizes fitted."""


class Prediction(ReportPart):
    """The loss a trial at a larger data size would measure."""

    data_size: Number
    """Where."""
    loss: float
    """Point prediction (the form the backtest chose)."""
    interval: OpenInterval | None = None
    """Backtest-calibrated prediction interval; null ends: the data cannot bound it."""
    distance_ratio: float
    """data_size over the largest fitted data size."""
    parametric_interval: OpenInterval | None = None
    """Bootstrap interval of the printed curve's value here (curve_loss; noise only)."""
    form: str | None = None
    """The form that predicts (with a backtest only)."""
    sigma_log: float | None = None
    """Log-space standard deviation of the prediction."""
    backtest_sigma_log: float | None = None
    """The backtest error model's part of sigma_log."""
    supported: bool | None = None
    """Whether a backtest reached this far."""
    curve_loss: float | None = None
    """The printed learning curve's own value here (what parametric_interval is about)."""
    note: str | None = None
    """Why the point differs from the printed curve (the form the backtest chose)."""


class FormBacktest(ReportPart):
    """One curve form's rolling-origin backtest."""

    form: str
    """Form name."""
    weight: float
    """Its weight in the interval mixture."""
    backtest_rmse_log: float | None = None
    """Root mean square log error of its held-out predictions."""
    n_backtests: int
    """Held-out predictions scored."""


class ExtrapolationReport(ReportPart):
    """How the prediction intervals were made."""

    method: str
    """rolling-origin backtest, or bootstrap only with too few data sizes."""
    form: str
    """The form that predicts."""
    forms: list[FormBacktest]
    """Every form's backtest."""
    noise_sigma_log: float | None = None
    """Noise of the log loss the error model starts from."""
    error_growth: float | None = None
    """Growth of the log error with the distance past the largest fitted size."""
    t_quantile: float | None = None
    """Student-t quantile of the interval (df = origins)."""
    origins: int | None = None
    """Backtest origins."""
    n_backtests: int | None = None
    """Held-out predictions of the chosen form."""
    reach_ratio: float | None = None
    """The farthest distance (ratio of data sizes) a backtest reached."""


class DataForTarget(ReportPart):
    """The data size at which the prediction reaches spec.fit.targetLoss."""

    target_loss: float
    """The target."""
    data_size: Number | None = None
    """Data needed (null: not reached, below the irreducible error)."""
    interval: list[Number | None] | None = None
    """Where the ends of the prediction interval reach it; null upper end: may never."""
    distance_ratio: float | None = None
    """data_size over the largest fitted data size."""
    parameters: float | None = None
    """Best model size there, from the model-size law."""


class ComputeOptimal(ReportPart):
    """Compute-optimal allocation N ~ C^a, D ~ C^b of the joint law."""

    a: float
    """Exponent of the parameter count."""
    b: float
    """Exponent of the data size."""
    a_interval: OpenInterval | None = None
    """Bootstrap interval of a; a null end: not bounded by the data on that side."""
    b_interval: OpenInterval | None = None
    """Bootstrap interval of b."""


class JointLawReport(ReportPart):
    """L(N, D) = E + A / N**alpha_N + B / D**beta_D (Hoffmann et al. 2022)."""

    E: float
    """Irreducible loss."""
    A: float
    """Model-size term scale."""
    B: float
    """Data term scale."""
    alpha_N: float  # noqa: N815
    """Model-size exponent."""
    beta_D: float  # noqa: N815
    """Data exponent."""
    intervals: dict[str, OpenInterval | None]
    """Bootstrap interval per parameter (keys as above); a null end: not bounded by the
    data on that side (an optimiser bound is never printed as a limit)."""
    compute_optimal: ComputeOptimal
    """Compute-optimal exponents."""
    n_points: int
    """Trials fitted."""


class FitReport(ReportPart):
    """Everything a fit says; `to_json()` is the `scalingstudy fit --json` output."""

    learning_curve: LearningCurve
    """Learning-curve fit."""
    model_size: ModelSizeLaw | None = None
    """Model-size fit (null without model sizes)."""
    best: list[BestModel]
    """Best model per data size."""
    per_model_size: list[ModelSizeCurve]
    """Each model size's own learning curve."""
    predictions: list[Prediction]
    """Loss predicted at larger data sizes."""
    extrapolation: ExtrapolationReport
    """How the prediction intervals were made."""
    interval_methods: dict[str, str]
    """What each interval in the report means."""
    warnings: list[str] = Field(default_factory=list)
    """Caveats of the fit."""
    data_for_target: DataForTarget | None = None
    """Data for the target loss (only when one was given)."""
    joint: JointLawReport | None = None
    """Joint fit in model size and data (only when asked for; null when not possible)."""
    compute_optimal: ComputeOptimalReport | None = None
    """Compute-optimal allocation (only for trials with a compute budget)."""
    verdicts: list[Verdict] = Field(default_factory=list)
    """What the data say about each reported quantity; every output renders these."""

    def verdict(self, quantity: str) -> Verdict | None:
        """The verdict on one quantity (None: not judged, e.g. absent from the report)."""
        return next((v for v in self.verdicts if v.quantity == quantity), None)

    def drawn(self, quantity: str) -> bool:
        """Whether a plot may draw the quantity's law as a line."""
        found = self.verdict(quantity)
        return found is None or found.drawn

    @classmethod
    def from_json(cls, raw: Any) -> FitReport:
        return cls.model_validate(raw)
