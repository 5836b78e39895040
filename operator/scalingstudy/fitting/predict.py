"""The report's predictions: loss at given data sizes, the band a plot shades, and the
data needed for a target loss, each with its calibrated interval (`extrapolation.py`).

The bootstrap over the power law (`engine.py`) stays in as the parametric part: a
prediction's log-space standard deviation is the larger of the backtest error model
and noise plus the bootstrap spread at that size, so an interval is never narrower
than the noise-only interval it replaces. Without a backtest (fewer than about six
data sizes) the bootstrap interval is all there is, and a warning says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from scalingstudy.fitting.curve import PowerLaw, quantile_interval
from scalingstudy.fitting.extrapolation import Extrapolation
from scalingstudy.fitting.points import number
from scalingstudy.fitting.report import (
    BandPoint,
    DataForTarget,
    ExtrapolationReport,
    FormBacktest,
    OpenInterval,
    Prediction,
)

BAND_POINTS = 24
#: How far data_for_target searches, as a multiple of the largest fitted size.
TARGET_HORIZON = 1e6
_LARGEST = float(np.finfo(float).max)
#: A loss is positive: an absurd extrapolation (a steep exponent fitted over a sliver of
#: data sizes, pushed far out) underflows to 0 and is held at the smallest positive float.
_SMALLEST = float(np.finfo(float).tiny)
_Z90 = 1.6448536269514722  # normal 95% quantile: bootstrap spread -> standard deviation


def _parametric_sigma(laws: Sequence[PowerLaw], x: np.ndarray) -> np.ndarray:
    """Log-space spread of the bootstrap curves at x, as a standard deviation."""
    if len(laws) < 2:
        return np.zeros_like(x)
    with np.errstate(all="ignore"):
        logs = np.log(np.maximum(np.stack([law(x) for law in laws]), 1e-300))
    lo, hi = np.nanquantile(logs, [0.05, 0.95], axis=0)
    return np.asarray(np.nan_to_num((hi - lo) / (2 * _Z90), nan=0.0))


class Predictor:
    """Point predictions and intervals at any data size for one fit."""

    def __init__(
        self,
        extrapolation: Extrapolation,
        law: PowerLaw,
        laws: Sequence[PowerLaw],
        confidence: float,
        *,
        identified: bool = True,
    ) -> None:
        self.ex = extrapolation
        self.law = law
        self.laws = laws
        self.confidence = confidence
        #: False when the curve has as many parameters as points: no interval can be had.
        self.identified = identified
        #: Whether the backtest gave an error model; else the bootstrap is all there is.
        self.calibrated = extrapolation.errors is not None
        self._cache: tuple[bytes, list[np.ndarray] | None] | None = None

    def _mixture(self, x: np.ndarray) -> list[np.ndarray] | None:
        """The mixture's interval ends and middle half at x, once per x (the point
        prediction and the interval both need them)."""
        key = x.tobytes()
        if self._cache is None or self._cache[0] != key:
            tail = (1.0 - self.confidence) / 2.0
            with np.errstate(all="ignore"):  # absurd inputs: the ends saturate
                found = self.ex.quantiles(
                    x, _parametric_sigma(self.laws, x), (tail, 0.25, 0.75, 1.0 - tail)
                )
            self._cache = (key, found)
        return self._cache[1]

    def loss(self, x: np.ndarray) -> np.ndarray:
        """With a backtest: the form the backtest chose, held within the middle half of the
        mixture over forms (a clean curve's best form decides; one that runs away from the
        others is pulled back). Without one: the power law's value."""
        centre = None
        found = self._mixture(x) if self.calibrated else None
        if found is not None:
            with np.errstate(all="ignore"):
                centre = np.clip(self.ex.loss(x), found[1], found[2])
        if centre is None:
            centre = np.asarray(self.law(x))
        return np.maximum(np.nan_to_num(centre, nan=_LARGEST), _SMALLEST)

    def sigma(self, x: np.ndarray) -> np.ndarray | None:
        return self.ex.sigma(x, _parametric_sigma(self.laws, x))

    def _ends(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Both ends of the calibrated interval at each x; None without a backtest."""
        found = self._mixture(x) if self.calibrated else None
        if found is None:
            return None
        ends = (found[0], found[3])
        low, high = (np.minimum(np.nan_to_num(e, nan=_LARGEST), _LARGEST) for e in ends)
        # The point prediction is the chosen form's; the interval is the mixture's. When
        # the forms disagree, the interval still holds the number printed beside it.
        centre = self.loss(x)
        return np.minimum(low, centre), np.maximum(high, centre)

    def intervals(self, x: np.ndarray) -> list[OpenInterval | None]:
        """Per size: [low, high] of the loss a trial there would measure, always holding the
        point prediction; [None, None] when the points cannot bound it at all."""
        if not self.identified:
            return [[None, None] for _ in x]
        ends = self._ends(x)
        if ends is None:
            found = [
                quantile_interval([float(s(at)) for s in self.laws], self.confidence) for at in x
            ]
        else:
            found = [[float(a), float(b)] for a, b in zip(*ends, strict=True)]
        centre = self.loss(x)
        return [
            None if iv is None else [min(iv[0], float(c)), max(iv[1], float(c))]
            for iv, c in zip(found, centre, strict=True)
        ]

    def prediction(self, at: float) -> Prediction:
        x = np.array([at])
        common = {
            "data_size": number(at),
            "loss": float(self.loss(x)[0]),
            "interval": self.intervals(x)[0],
            "distance_ratio": float(at / self.ex.x_last),
            "parametric_interval": quantile_interval(
                [float(s(at)) for s in self.laws], self.confidence
            ),
        }
        errors = self.ex.errors
        if errors is None:
            return Prediction.model_validate(common)
        distance = float(self.ex.distance(x)[0])
        return Prediction.model_validate(
            {
                **common,
                "form": self.ex.form,
                "sigma_log": float(self.sigma(x)[0]),  # type: ignore[index]
                "backtest_sigma_log": float(errors.sigma(distance)),
                "supported": bool(distance <= errors.max_distance + 1e-12),
            }
        )

    def band(self, m_min: float, top: float) -> list[BandPoint]:
        """The prediction band from the smallest data size to the farthest prediction."""
        if not self.calibrated and len(self.laws) < 2:
            return []
        x = np.geomspace(m_min, top, BAND_POINTS)
        centre = self.loss(x)
        return [
            BandPoint(data_size=float(at), loss=float(c), interval=iv)
            for at, c, iv in zip(x, centre, self.intervals(x), strict=True)
            if iv is not None and None not in iv
        ]

    def data_for_target(self, target: float) -> DataForTarget:
        """Where the prediction (and each end of its interval) first reaches the target.

        The interval's upper end is None when even the pessimistic curve does not get
        there within TARGET_HORIZON times the largest fitted size: the target may be
        unreachable."""
        if not self.identified:
            needed = self.law.data_for(target)
            return DataForTarget(
                target_loss=target, data_size=_rounded_size(needed), interval=[None, None]
            )
        x = np.geomspace(self.ex.x_first, self.ex.x_last * TARGET_HORIZON, 2000)
        ends = self._ends(x)
        if ends is None:
            return self._bootstrap_target(target)
        centre = self.loss(x)
        low, high = ends

        def first(curve: np.ndarray) -> float | None:
            hit = np.nonzero(curve <= target)[0]
            return None if hit.size == 0 else float(x[hit[0]])

        needed, optimistic, pessimistic = first(centre), first(low), first(high)
        return DataForTarget(
            target_loss=target,
            data_size=_rounded_size(needed),
            interval=[_rounded_size(optimistic), _rounded_size(pessimistic)],
            distance_ratio=None if needed is None else needed / self.ex.x_last,
        )

    def _bootstrap_target(self, target: float) -> DataForTarget:
        needed = self.law.data_for(target)
        interval: list[float | int | None] | None = None
        if self.laws:
            values = np.array(
                [np.inf if d is None else d for d in (s.data_for(target) for s in self.laws)]
            )
            tail = (1.0 - self.confidence) / 2.0
            ends = (np.quantile(values, q, method="inverted_cdf") for q in (tail, 1.0 - tail))
            interval = [_rounded_size(v if np.isfinite(v) else None) for v in ends]
        return DataForTarget(target_loss=target, data_size=_rounded_size(needed), interval=interval)


def _rounded_size(x: float | None) -> int | float | None:
    return None if x is None else number(round(x))


def extrapolation_report(ex: Extrapolation) -> ExtrapolationReport:
    """How the prediction intervals were made: the forms' backtests and the error model."""
    forms = [
        FormBacktest(
            form=s.form,
            weight=s.weight,
            backtest_rmse_log=None if math.isnan(s.backtest_rmse) else s.backtest_rmse,
            n_backtests=s.n_backtests,
        )
        for s in ex.scores
    ]
    errors = ex.errors
    if errors is None:
        return ExtrapolationReport(
            method="bootstrap only (too few data sizes)", form=ex.form, forms=forms
        )
    return ExtrapolationReport(
        method="rolling-origin backtest",
        form=ex.form,
        forms=forms,
        noise_sigma_log=errors.noise,
        error_growth=errors.growth,
        t_quantile=errors.t_quantile,
        origins=errors.origins,
        n_backtests=errors.n_backtests,
        reach_ratio=ex.reach,
    )


def reach_warnings(predictor: Predictor, predict_at: Sequence[float]) -> list[str]:
    ex = predictor.ex
    if ex.errors is None:
        return [
            "too few data sizes to backtest the extrapolation: prediction intervals "
            "cover the noise around the fitted curve only, not the error of its form"
        ]
    out = []
    reach = ex.reach or 1.0
    for at in predict_at:
        if at / ex.x_last > reach * (1 + 1e-9):
            out.append(
                f"prediction at {at:g} is {at / ex.x_last:.3g}x the largest fitted data size; "
                f"the backtest reaches only {reach:.3g}x: its interval is extrapolated "
                "from the backtest's error growth"
            )
    return out
