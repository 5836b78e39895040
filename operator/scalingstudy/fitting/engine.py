"""The fit API every caller uses (CLI, local runner, operator): points in, report out.

The report is a plain JSON-ready dict in the shape of DESIGN §5, so the CLI can
print it, the runner can write it and the operator can copy it into status.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalingstudy.fitting.curve import (
    BETA_MAX,
    CurveFit,
    PowerLaw,
    fit_log_linear,
    fit_power_law,
    local_grid,
    profile_interval,
)
from scalingstudy.fitting.extrapolation import extrapolate
from scalingstudy.fitting.joint import bootstrap_joint, fit_joint, unidentified
from scalingstudy.fitting.model_size import edge_warnings, fit_size_law, optima
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
from scalingstudy.fitting.predict import (
    Predictor,
    extrapolation_report,
    quantile_interval,
    reach_warnings,
)
from scalingstudy.fitting.region import find_region

FORM_NAMES = {False: "power-law", True: "power-law-plus-constant"}

#: What each interval in the report means (the report carries this too).
INTERVAL_METHODS = {
    "learning_curve.beta_interval": (
        "confidence interval of beta_g: bootstrap over trials (or the curve's residuals) "
        "joined with the profile-likelihood interval (F test), also under the curve with "
        "gamma when form auto drops it"
    ),
    "predictions[].interval": (
        "prediction interval of the loss a trial at that data size would measure: the "
        "central range of a mixture over the curve forms (weighted by their rolling-origin "
        "backtest error), each with its log error modelled from its backtest as growing "
        "with the distance past the largest fitted size, never narrower than noise plus "
        "the bootstrap spread; the point prediction is the form the backtest chose"
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


@dataclass
class _Sample:
    """One bootstrap replicate's fits."""

    law: PowerLaw
    size_beta: float | None
    size_alpha: float | None


@dataclass
class _Bootstrap:
    samples: list[_Sample] = field(default_factory=list)
    failed: int = 0


def _select_form(m: np.ndarray, y: np.ndarray, form: Form) -> tuple[CurveFit, list[str]]:
    warnings: list[str] = []
    if form == "power-law":
        return fit_power_law(m, y, with_gamma=False), warnings
    if form == "power-law-plus-constant":
        return fit_power_law(m, y, with_gamma=True), warnings
    plain = fit_power_law(m, y, with_gamma=False)
    with_gamma = fit_power_law(m, y, with_gamma=True)
    if len(m) < 5:
        warnings.append(
            f"only {len(m)} data sizes: the irreducible error cannot be identified, "
            "gamma fixed at 0"
        )
        return plain, warnings
    return (with_gamma if with_gamma.aicc < plain.aicc else plain), warnings


def _size_law(best: Sequence[BestPoint]) -> tuple[float, float, float] | None:
    sized = [b for b in best if b.size is not None]
    if len(sized) < 3:
        return None
    return fit_log_linear(
        np.array([b.data_size for b in sized]),
        np.array([float(b.size) for b in sized]),  # type: ignore[arg-type]
    )


#: A bootstrap replicate as arrays: data sizes, losses, model sizes (nan: unknown).
Replicate = tuple[np.ndarray, np.ndarray, np.ndarray]


def _arrays(best: Sequence[BestPoint]) -> Replicate:
    return (
        np.array([b.data_size for b in best], dtype=float),
        np.array([b.loss for b in best], dtype=float),
        np.array([np.nan if b.size is None else b.size for b in best], dtype=float),
    )


def _beta_interval(
    m: np.ndarray, y: np.ndarray, fit: CurveFit, laws: Sequence[PowerLaw], options: FitOptions
) -> list[float] | None:
    """Bootstrap and profile-likelihood intervals together. With form auto the profile is
    also taken under the curve with gamma: the information criterion often drops a small
    gamma, and an interval conditional on that choice is far too narrow (on synthetic
    curves with a planted gamma, coverage 0.3 instead of 0.9)."""
    if not options.bootstrap:
        return None
    candidates = [
        quantile_interval([s.beta for s in laws], options.confidence),
        profile_interval(m, y, fit, options.confidence),
    ]
    if options.form == "auto" and fit.k == 2 and len(m) > 3:
        flexible = fit_power_law(m, y, with_gamma=True)
        candidates.append(profile_interval(m, y, flexible, options.confidence))
    return _hull(*candidates)


def _hull(*intervals: list[float] | None) -> list[float] | None:
    """The smallest interval containing every given one (None when none is given)."""
    given = [i for i in intervals if i is not None]
    if not given:
        return None
    return [min(i[0] for i in given), max(i[1] for i in given)]


def _centred_log_residuals(observed: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Log residuals, centred and inflated for the two fitted parameters (a residual
    bootstrap draws from them)."""
    r = np.log(observed) - np.log(predicted)
    return np.asarray((r - r.mean()) * np.sqrt(len(r) / max(len(r) - 2, 1)))


def _resampler(
    points: Sequence[Point],
    best: Sequence[BestPoint],
    law: PowerLaw,
    window: tuple[int, int],
    rng: np.random.Generator,
) -> Callable[[], Replicate]:
    """How to draw a replicate: over trials when configurations have several seeds (the
    design's bootstrap over trials), else over the curve's log residuals."""
    grouped = cells(points)
    if any(len(members) > 1 for members in grouped.values()):
        keys = list(grouped)

        def over_trials() -> Replicate:
            drawn = {
                k: [grouped[k][j] for j in rng.integers(0, len(grouped[k]), len(grouped[k]))]
                for k in keys
            }
            return _arrays(best_from_cells(drawn))

        return over_trials

    m = np.array([b.data_size for b in best])
    observed = np.array([b.loss for b in best])
    n = len(m)
    lo, hi = window
    # Only the power-law region is resampled; points outside it keep their values.
    region_fit = law(m[lo:hi])
    residuals = _centred_log_residuals(observed[lo:hi], region_fit)
    sizes = [b.size for b in best]
    fixed_sizes = np.array([np.nan if v is None else v for v in sizes], dtype=float)
    size_fit = _size_law(best)
    size_res: np.ndarray | None = None
    if size_fit is not None and all(s is not None for s in sizes):
        size_res = _centred_log_residuals(
            np.array(sizes, dtype=float), size_fit[0] * m ** size_fit[1]
        )

    def over_residuals() -> Replicate:
        loss = observed.copy()
        loss[lo:hi] = region_fit * np.exp(rng.choice(residuals, hi - lo))
        if size_res is not None and size_fit is not None:
            new_sizes = size_fit[0] * m ** size_fit[1] * np.exp(rng.choice(size_res, n))
        else:
            new_sizes = fixed_sizes
        return m, loss, new_sizes

    return over_residuals


def _bootstrap(
    points: Sequence[Point],
    best: Sequence[BestPoint],
    fit: CurveFit,
    window: tuple[int, int],
    options: FitOptions,
) -> _Bootstrap:
    rng = np.random.default_rng(options.random_seed)
    lo, hi = window
    draw = _resampler(points, best, fit.law, window, rng)
    with_gamma = fit.k == 3
    grid = local_grid(fit.law.beta, max(0.05, 0.5 * abs(fit.law.beta)))
    out = _Bootstrap()
    for _ in range(options.bootstrap):
        m_all, y_all, sizes = draw()
        if len(m_all) < 3:
            out.failed += 1
            continue
        law = fit_power_law(
            m_all[lo:hi], y_all[lo:hi], with_gamma=with_gamma, polish=False, grid=grid
        ).law
        sized = np.isfinite(sizes)
        size = fit_log_linear(m_all[sized], sizes[sized]) if sized.sum() >= 3 else None
        out.samples.append(
            _Sample(law, None if size is None else size[1], None if size is None else size[0])
        )
    return out


def _falls(law: PowerLaw, m: np.ndarray) -> bool:
    """Whether the fitted curve improves by more than 0.5% over the measured range."""
    drop = float(np.log(law(m.min())) - np.log(law(m.max())))
    return law.beta < BETA_MAX * 10 and drop > 5e-3


def _r2_log(m: np.ndarray, y: np.ndarray, law: PowerLaw) -> float:
    ly = np.log(y)
    sst = float(np.sum((ly - ly.mean()) ** 2))
    sse = float(np.sum((ly - np.log(law(m))) ** 2))
    return 1.0 - sse / sst if sst > 0 else 0.0


def _learning_curve(
    m: np.ndarray, y: np.ndarray, form: Form
) -> tuple[CurveFit, int, int, list[str]]:
    """Find the power-law region, then choose the form on the points inside it.

    With form auto the region is searched with the constant included (the more
    flexible curve), so a flattening tail is modelled by gamma rather than cut
    away, and only points that even gamma cannot explain are excluded.
    """
    search_with_gamma = form != "power-law"
    region = find_region(m, y, lambda a, b: fit_power_law(a, b, with_gamma=search_with_gamma))
    lo, hi = region.lo, region.hi
    fit, warnings = _select_form(m[lo:hi], y[lo:hi], form)
    if lo or hi < len(m):
        warnings.append(
            f"fitted over the power-law region [{m[lo]:g}, {m[hi - 1]:g}]; "
            f"{lo} small-data and {len(m) - hi} irreducible-region point(s) excluded"
        )
    if not _falls(fit.law, m[lo:hi]):
        # alpha ~ 0 leaves beta undetermined: report the plain log-log slope (about 0).
        lo, hi = 0, len(m)
        fit = fit_power_law(m, y, with_gamma=False)
        warnings.append(
            "the learning curve does not fall with more data (fitted beta is about 0): "
            "check training, or the data sizes may all be in the irreducible-error region"
        )
    return fit, lo, hi, warnings


def _per_model_size(points: Sequence[Point], with_gamma: bool) -> list[dict[str, Any]]:
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
            {
                "model_size": number(model),
                "alpha": law.alpha,
                "beta": law.beta,
                "gamma": law.gamma,
                "n_points": len(m),
            }
        )
    return out


def fit_points(points: Sequence[Point], options: FitOptions | None = None) -> dict[str, Any]:
    """Fit the learning curve and the model-size law; predict. Raises FitError on bad input."""
    options = options or FitOptions()
    if not 0 < options.confidence < 1:
        raise FitError(f"confidence must lie in (0, 1) (got {options.confidence})")
    for at in options.predict_at:
        if not np.isfinite(at) or at <= 0:
            raise FitError(f"prediction data size must be a finite number > 0 (got {at!r})")
    if options.target_loss is not None and not (
        np.isfinite(options.target_loss) and options.target_loss > 0
    ):
        raise FitError(f"target loss must be a finite number > 0 (got {options.target_loss!r})")
    validate(points)

    best = best_from_cells(cells(points))
    m = np.array([b.data_size for b in best])
    y = np.array([b.loss for b in best])
    fit, lo, hi, warnings = _learning_curve(m, y, options.form)
    law = fit.law
    if hi - lo < 5:
        warnings.append(f"only {hi - lo} data sizes in the fit: exponents and intervals are rough")

    boot = (
        _bootstrap(points, best, fit, (lo, hi), options) if options.bootstrap > 0 else _Bootstrap()
    )
    if options.bootstrap and boot.failed:
        warnings.append(
            f"{boot.failed} of {options.bootstrap} bootstrap replicates could not be fitted"
        )
    laws = [s.law for s in boot.samples]
    conf = options.confidence
    # Predictions use the flattening tail too (M2 and M4 bend into the irreducible
    # error); the small-data plateau only where a form can model it (M4).
    predictor = Predictor(extrapolate(m, y, conf, plateau_end=lo), law, laws, conf)
    warnings.extend(reach_warnings(predictor, options.predict_at))

    report: dict[str, Any] = {
        "learning_curve": {
            "form": FORM_NAMES[fit.k == 3],
            "alpha": law.alpha,
            "beta": law.beta,
            "gamma": law.gamma,
            "beta_interval": _beta_interval(m[lo:hi], y[lo:hi], fit, laws, options),
            "alpha_interval": quantile_interval([s.alpha for s in laws], conf),
            "gamma_interval": (
                quantile_interval([s.gamma for s in laws], conf) if fit.k == 3 else None
            ),
            "r2_log": _r2_log(m[lo:hi], y[lo:hi], law),
            "n_points": hi - lo,
            "power_law_range": [number(m[lo]), number(m[hi - 1])],
            "confidence": conf,
            "band": predictor.band(float(m.min()), max([float(m.max()), *options.predict_at])),
        },
        "model_size": None,
        "best": [
            {
                "data_size": number(b.data_size),
                "model_size": None if b.model_size is None else number(b.model_size),
                "loss": b.loss,
                "parameters": None if b.size is None else number(b.size),
                "seeds": b.seeds,
            }
            for b in best
        ],
        "per_model_size": _per_model_size(points, fit.k == 3),
        "predictions": [predictor.prediction(at) for at in options.predict_at],
        "extrapolation": extrapolation_report(predictor.ex),
        "interval_methods": INTERVAL_METHODS,
        "warnings": warnings,
    }
    size = _model_size(points, best, boot, conf, warnings)
    report["model_size"] = size
    if options.target_loss is not None:
        target = predictor.data_for_target(options.target_loss)
        if target["data_size"] is not None and size is not None:
            target["parameters"] = size["alpha"] * target["data_size"] ** size["beta"]
        report["data_for_target"] = target
    if options.joint:
        report["joint"] = _joint(points, options, warnings)
    return report


def _model_size(
    points: Sequence[Point],
    best: Sequence[BestPoint],
    boot: _Bootstrap,
    confidence: float,
    warnings: list[str],
) -> dict[str, Any] | None:
    """beta_p through the continuous optima (censored at the grid's edges); the law
    through the best grid points when there are too few optima for it."""
    grid_law = _size_law(best)
    if grid_law is None:
        return None
    estimates = optima(points)
    warnings.extend(edge_warnings(estimates))
    law = fit_size_law(estimates, confidence)
    out: dict[str, Any] = {
        "grid_beta": grid_law[1],
        "r2_log": grid_law[2],
        "estimates": [
            {
                "data_size": number(e.data_size),
                "parameters": e.parameters,
                "censored": e.censored,
                "grid_best": number(e.grid_best),
            }
            for e in estimates
        ],
    }
    if law is None:
        out.update(
            method="best grid point",
            alpha=grid_law[0],
            beta=grid_law[1],
            beta_interval=quantile_interval(
                [s.size_beta for s in boot.samples if s.size_beta is not None], confidence
            ),
        )
        if estimates:
            warnings.append(
                "model-size law through the best grid points (a step function): fewer than "
                "2 data sizes have their best model inside the grid of model sizes"
            )
        return out
    out.update(
        method="continuous optimum (censored fit)",
        alpha=law.alpha,
        beta=law.beta,
        beta_interval=law.interval,
    )
    return out


def _joint(
    points: Sequence[Point], options: FitOptions, warnings: list[str]
) -> dict[str, Any] | None:
    rows = [p for p in points if p.size is not None]
    n = np.array([p.size for p in rows], dtype=float)
    d = np.array([p.data_size for p in rows], dtype=float)
    loss = np.array([p.loss for p in rows], dtype=float)
    if len(set(n)) < 3 or len(set(d)) < 3:
        warnings.append(
            "joint fit skipped: it needs at least 3 model sizes and 3 data sizes "
            f"(got {len(set(n))} and {len(set(d))})"
        )
        return None
    law = fit_joint(n, d, loss)
    problem = unidentified(law)
    if problem is not None:
        warnings.append(f"joint fit not reported: {problem}")
        return None
    replicates = min(options.bootstrap, options.joint_bootstrap)
    draws = bootstrap_joint(n, d, loss, law, replicates, np.random.default_rng(options.random_seed))
    names = {"E": "E", "A": "A", "B": "B", "alpha_N": "alpha", "beta_D": "beta"}
    return {
        **{key: getattr(law, attr) for key, attr in names.items()},
        "intervals": {
            key: quantile_interval([getattr(s, attr) for s in draws], options.confidence)
            for key, attr in names.items()
        },
        "compute_optimal": law.compute_optimal,
        "n_points": len(rows),
    }
