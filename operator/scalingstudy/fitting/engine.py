"""The fit API every caller uses (CLI, local runner, operator): points in, report out.

The report is a typed `FitReport` (`report.py`): its `to_json()` is the DESIGN §5
contract the CLI prints and the runner writes; the operator's status is its camelCase
view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from scalingstudy.fitting.bootstrap import bootstrap
from scalingstudy.fitting.compute_optimal import isoflop_fit
from scalingstudy.fitting.curve import (
    BETA_MAX,
    CurveFit,
    PowerLaw,
    fit_power_law,
    open_at_bounds,
    profile_interval,
    quantile_interval,
)
from scalingstudy.fitting.extrapolation import extrapolate
from scalingstudy.fitting.invariants import checked
from scalingstudy.fitting.joint import joint_report
from scalingstudy.fitting.model_size import model_size_law
from scalingstudy.fitting.options import FitOptions, Form
from scalingstudy.fitting.points import (
    BestPoint,
    FitError,
    Point,
    best_from_cells,
    cells,
    number,
    validate,
)
from scalingstudy.fitting.predict import Predictor, extrapolation_report, reach_warnings
from scalingstudy.fitting.region import find_region
from scalingstudy.fitting.report import (
    BestModel,
    DataForTarget,
    FitReport,
    LearningCurve,
    ModelSizeCurve,
    ModelSizeLaw,
    OpenInterval,
)
from scalingstudy.fitting.robust import find_outliers, fit_robust
from scalingstudy.fitting.sensitivity import Sensitivity, flat_curve, outlier_sensitivity
from scalingstudy.words import plural

FORM_NAMES = {False: "power-law", True: "power-law-plus-constant"}

#: What each interval in the report means (the report carries this too).
INTERVAL_METHODS = {
    "learning_curve.beta_interval": (
        "confidence interval of beta_g: bootstrap over trials (or the curve's residuals) "
        "joined with the profile-likelihood interval (F test), also under the curve with "
        "gamma when form auto drops it; a null end: the data do not bound beta_g there"
    ),
    "predictions[].interval": (
        "prediction interval of the loss a trial at that data size would measure: the "
        "central range of a mixture over the curve forms (weighted by their rolling-origin "
        "backtest error), each with its log error modelled from its backtest as growing "
        "with the distance past the largest fitted size, never narrower than noise plus "
        "the bootstrap spread; every form held between the curve's trend and its current "
        "level past the data; the point prediction is the form the backtest chose, held "
        "within the mixture's middle half, and always inside the interval; null ends: "
        "not bounded by the data"
    ),
    "predictions[].parametric_interval": (
        "bootstrap interval of the power law alone: noise only, no error of the form"
    ),
    "learning_curve.band": "the prediction interval along the curve",
    "data_for_target.interval": (
        "data sizes at which the ends of the prediction interval reach the target; "
        "null upper end: may be unreachable"
    ),
    "model_size.beta_interval": (
        "profile-likelihood interval of beta_p from the continuous optima, censored ones "
        "as bounds (bootstrap over the best grid points when the optima are too few)"
    ),
}


@dataclass(frozen=True)
class _Curve:
    """The learning-curve fit over the power-law region [lo, hi)."""

    fit: CurveFit
    #: The same window fitted with the constant, when form auto weighed it (reused by the
    #: beta interval); None when it was not fitted.
    flexible: CurveFit | None
    lo: int
    hi: int
    warnings: list[str]
    #: The t interval of the log-log slope of a curve that does not fall (else None).
    flat_interval: OpenInterval | None = None


def _select_form(
    m: np.ndarray, y: np.ndarray, form: Form
) -> tuple[CurveFit, CurveFit | None, list[str]]:
    """The fit of the requested form; with auto the smaller AICc (and the curve with the
    constant as the alternative)."""
    if form == "power-law":
        return fit_robust(m, y, with_gamma=False), None, []
    if form == "power-law-plus-constant":
        return fit_robust(m, y, with_gamma=True), None, []
    plain = fit_robust(m, y, with_gamma=False)
    with_gamma = fit_robust(m, y, with_gamma=True)
    if len(m) < 5:
        return (
            plain,
            with_gamma,
            [
                f"only {len(m)} data sizes: the irreducible error cannot be identified, "
                "gamma fixed at 0"
            ],
        )
    return (with_gamma if with_gamma.aicc < plain.aicc else plain), with_gamma, []


def _beta_interval(
    m: np.ndarray, y: np.ndarray, curve: _Curve, laws: Sequence[PowerLaw], options: FitOptions
) -> OpenInterval | None:
    """Bootstrap and profile-likelihood intervals together. With form auto the profile is
    also taken under the curve with gamma: the information criterion often drops a small
    gamma, and an interval conditional on that choice is far too narrow (on synthetic
    curves with a planted gamma, coverage 0.3 instead of 0.9).

    No degrees of freedom left (as many parameters as points): both ends open, since a
    bootstrap of zero residuals would print a zero-width interval."""
    if not options.bootstrap:
        return None
    fit = curve.fit
    if curve.flat_interval is not None:
        return curve.flat_interval
    if fit.dof < 1:
        return [None, None]
    candidates = [
        open_at_bounds(quantile_interval([s.beta for s in laws], options.confidence)),
        profile_interval(m, y, fit, options.confidence),
    ]
    if options.form == "auto" and fit.k == 2 and len(m) > 3:
        flexible = curve.flexible or fit_power_law(m, y, with_gamma=True)
        candidates.append(profile_interval(m, y, flexible, options.confidence))
    return _hull(*candidates)


def _hull(*intervals: OpenInterval | None) -> OpenInterval | None:
    """The smallest interval containing every given one (None when none is given); an open
    end of any of them is open in the hull."""
    given = [i for i in intervals if i is not None]
    if not given:
        return None
    lows, highs = [i[0] for i in given], [i[1] for i in given]
    return [
        None if None in lows else min(v for v in lows if v is not None),
        None if None in highs else max(v for v in highs if v is not None),
    ]


def _falls(law: PowerLaw, m: np.ndarray) -> bool:
    """Whether the fitted curve improves by more than 0.5% over the measured range."""
    drop = float(np.log(law(m.min())) - np.log(law(m.max())))
    return law.beta < BETA_MAX * 10 and drop > 5e-3


def _r2_log(m: np.ndarray, y: np.ndarray, law: PowerLaw) -> float:
    ly = np.log(y)
    sst = float(np.sum((ly - ly.mean()) ** 2))
    sse = float(np.sum((ly - law.log(m)) ** 2))
    return 1.0 - sse / sst if sst > 0 else 0.0


def _learning_curve(m: np.ndarray, y: np.ndarray, form: Form, confidence: float) -> _Curve:
    """Find the power-law region, then choose the form on the points inside it.

    With form auto the region is searched with the constant included (the more
    flexible curve), so a flattening tail is modelled by gamma rather than cut
    away, and only points that even gamma cannot explain are excluded. Every fit is
    robust (`robust.py`): one bad point neither moves the region nor the exponent much.
    """
    search_with_gamma = form != "power-law"
    lo, hi = find_region(m, y, lambda a, b: fit_robust(a, b, with_gamma=search_with_gamma))
    fit, flexible, warnings = _select_form(m[lo:hi], y[lo:hi], form)
    if lo or hi < len(m):
        warnings.append(
            f"fitted over the power-law region [{m[lo]:g}, {m[hi - 1]:g}]; "
            f"{plural(lo, 'small-data point')} and "
            f"{plural(len(m) - hi, 'irreducible-region point')} excluded"
        )
    if not _falls(fit.law, m[lo:hi]):
        warnings.append(
            "the learning curve does not fall with more data (beta_g is the plain log-log "
            "slope): check training, or the data sizes may all be in the irreducible-error "
            "region"
        )
        flat, interval = flat_curve(m, y, confidence)
        return _Curve(flat, None, 0, len(m), warnings, interval)
    return _Curve(fit, flexible, lo, hi, warnings)


def _per_model_size(points: Sequence[Point], with_gamma: bool) -> list[ModelSizeCurve]:
    """The learning curve of each model size on its own (mean over seeds)."""
    by_model: dict[float, dict[float, list[float]]] = {}
    for p in points:
        if p.model_size is not None:
            by_model.setdefault(p.model_size, {}).setdefault(p.data_size, []).append(p.loss)
    out = []
    for model, curve in sorted(by_model.items()):
        if len(curve) < 3:
            continue
        m = np.array(sorted(curve))
        y = np.array([float(np.mean(curve[k])) for k in sorted(curve)])
        law = fit_power_law(m, y, with_gamma=with_gamma and len(m) >= 5).law
        out.append(
            ModelSizeCurve(
                model_size=number(model),
                alpha=law.alpha,
                beta=law.beta,
                gamma=law.gamma,
                n_points=len(m),
            )
        )
    return out


def _check(options: FitOptions) -> None:
    if not 0 < options.confidence < 1:
        raise FitError(f"confidence must lie in (0, 1) (got {options.confidence})")
    for at in options.predict_at:
        if not np.isfinite(at) or at <= 0:
            raise FitError(f"prediction data size must be a finite number > 0 (got {at!r})")
    if options.target_loss is not None and not (
        np.isfinite(options.target_loss) and options.target_loss > 0
    ):
        raise FitError(f"target loss must be a finite number > 0 (got {options.target_loss!r})")


def _best_models(best: Sequence[BestPoint]) -> list[BestModel]:
    return [
        BestModel(
            data_size=number(b.data_size),
            model_size=None if b.model_size is None else number(b.model_size),
            loss=b.loss,
            parameters=None if b.size is None else number(b.size),
            seeds=b.seeds,
        )
        for b in best
    ]


def fit_points(points: Sequence[Point], options: FitOptions | None = None) -> FitReport:
    """Fit the learning curve and the model-size law; predict. Raises FitError on bad input.

    On one BLAS thread: the arrays are of tens of points, so a BLAS thread pool never
    speeds a fit up, and OpenBLAS's idle threads spin; measured on 2 cores, a study's
    status fit took 65% more CPU with the default pool for the same wall time, CPU that
    trials running beside it (or the operator's other work) then lack."""
    with threadpool_limits(1, user_api="blas"):
        return _fit_points(points, options or FitOptions())


@dataclass(frozen=True)
class _Kept:
    """The best point per data size (all of them: the model-size law and the table read
    these), and what the learning curve reads once the outliers are left out."""

    all_best: list[BestPoint]
    best: list[BestPoint]
    curve_points: list[Point]
    flagged: list[tuple[int, float]]


def _leave_out_outliers(points: Sequence[Point], options: FitOptions) -> _Kept:
    """Outliers are left out of everything the learning curve feeds: its fit, bootstrap,
    predictions (the model-size law and the report's table of best models keep them)."""
    all_best = best_from_cells(cells(points))
    all_m = np.array([b.data_size for b in all_best])
    all_y = np.array([b.loss for b in all_best])
    flagged = find_outliers(all_m, all_y, with_gamma=options.form != "power-law")
    gone = {all_best[i].data_size for i, _ in flagged}
    return _Kept(
        all_best,
        [b for b in all_best if b.data_size not in gone],
        [p for p in points if p.data_size not in gone],
        list(flagged),
    )


def _size_warnings(fit: CurveFit, n: int) -> list[str]:
    if fit.dof < 1:
        return [
            f"{n} data sizes for {fit.k} parameters: nothing is left to measure "
            "uncertainty with, so beta_g and predictions have unbounded intervals; add data "
            "sizes (or use --form power-law)"
        ]
    return [f"only {n} data sizes in the fit: exponents and intervals are rough"] if n < 5 else []


def _curve_report(
    m: np.ndarray, y: np.ndarray, curve: _Curve, laws: Sequence[PowerLaw],
    predictor: Predictor, sensitivity: Sensitivity, options: FitOptions,
) -> LearningCurve:  # fmt: skip
    fit, lo, hi, conf = curve.fit, curve.lo, curve.hi, options.confidence
    return LearningCurve(
        form=FORM_NAMES[fit.k == 3],
        alpha=fit.law.alpha,
        beta=fit.law.beta,
        gamma=fit.law.gamma,
        beta_interval=_beta_interval(m[lo:hi], y[lo:hi], curve, laws, options),
        alpha_interval=quantile_interval([s.alpha for s in laws], conf) if fit.dof >= 1 else None,
        gamma_interval=(
            quantile_interval([s.gamma for s in laws], conf)
            if fit.k == 3 and fit.dof >= 1
            else None
        ),
        r2_log=_r2_log(m[lo:hi], y[lo:hi], fit.law),
        n_points=hi - lo,
        power_law_range=[number(m[lo]), number(m[hi - 1])],
        confidence=conf,
        band=predictor.band(float(m.min()), max([float(m.max()), *options.predict_at])),
        outliers=sensitivity.outliers,
        beta_with_outliers=sensitivity.beta_with,
    )


def _target(predictor: Predictor, size: ModelSizeLaw | None, target_loss: float) -> DataForTarget:
    """The data for the target, and the best model size there from the model-size law."""
    target = predictor.data_for_target(target_loss)
    if target.data_size is not None and size is not None and size.beta is not None:
        parameters = (size.alpha or 0.0) * target.data_size**size.beta
        target = target.model_copy(update={"parameters": parameters})
    return target


def _fit_points(points: Sequence[Point], options: FitOptions) -> FitReport:
    _check(options)
    validate(points)
    parts: dict[str, Any] = {}
    warnings: list[str] = list(options.notes)
    if any(p.compute is not None for p in points):
        # The compute-optimal analysis and the study's joint law over every trial; the
        # rest of the fit sees each budget's best trial (the frontier).
        iso = isoflop_fit(points, options, warnings)
        parts["compute_optimal"], points = iso.compute_optimal, iso.frontier
        if options.joint:
            parts["joint"] = iso.joint
    kept = _leave_out_outliers(points, options)
    m = np.array([b.data_size for b in kept.best])
    y = np.array([b.loss for b in kept.best])
    curve = _learning_curve(m, y, options.form, options.confidence)
    fit, lo, hi = curve.fit, curve.lo, curve.hi
    warnings += [*curve.warnings, *_size_warnings(fit, hi - lo)]
    all_m = np.array([b.data_size for b in kept.all_best])
    all_y = np.array([b.loss for b in kept.all_best])
    sensitivity = outlier_sensitivity(all_m, all_y, kept.flagged, fit)
    warnings.extend(sensitivity.warnings)
    boot = bootstrap(kept.curve_points, kept.best, fit, (lo, hi), options)
    if options.bootstrap and boot.failed:
        warnings.append(
            f"{boot.failed} of {options.bootstrap} bootstrap replicates could not be fitted"
        )
    conf = options.confidence
    # Predictions use the flattening tail too (M2 and M4 bend into the irreducible
    # error); the small-data plateau only where a form can model it (M4).
    predictor = Predictor(extrapolate(m, y, conf, plateau_end=lo), fit.law, boot.laws, conf,
                          identified=fit.dof >= 1)  # fmt: skip
    warnings.extend(reach_warnings(predictor, options.predict_at))
    learning_curve = _curve_report(m, y, curve, boot.laws, predictor, sensitivity, options)
    size = model_size_law(
        points, kept.all_best, quantile_interval(boot.size_betas, conf), conf, warnings
    )
    if options.target_loss is not None:
        parts["data_for_target"] = _target(predictor, size, options.target_loss)
    if options.joint and "joint" not in parts:
        parts["joint"] = joint_report(points, options, warnings)
    return checked(
        FitReport(
            learning_curve=learning_curve,
            model_size=size,
            best=_best_models(kept.all_best),
            per_model_size=_per_model_size(points, fit.k == 3),
            predictions=[predictor.prediction(at) for at in options.predict_at],
            extrapolation=extrapolation_report(predictor.ex),
            interval_methods=INTERVAL_METHODS,
            warnings=warnings,
            **parts,
        )
    )
