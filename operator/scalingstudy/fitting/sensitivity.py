"""What a single point does to beta_g, and the exponent of a curve that does not fall.

Both are about saying what the data cannot: an outlier is named with how far beta_g
moves with it, and a flat or
rising curve gets its plain log-log slope with an ordinary t interval instead of an
exponent pinned at the end of the searched range.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import stdtrit

from scalingstudy.fitting.curve import Array, CurveFit, PowerLaw, fit_log_linear
from scalingstudy.fitting.points import FitError, number
from scalingstudy.fitting.report import OpenInterval, Outlier
from scalingstudy.fitting.robust import fit_robust


@dataclass(frozen=True)
class Sensitivity:
    outliers: list[Outlier] = field(default_factory=list)
    beta_with: float | None = None
    warnings: list[str] = field(default_factory=list)


def outlier_sensitivity(
    m: Array, y: Array, flagged: list[tuple[int, float]], fit: CurveFit
) -> Sensitivity:
    """The outliers left out (indices into the full curve m, y, with their robust z), and
    beta_g of the same form fitted with them kept in."""
    if not flagged:
        return Sensitivity()
    with_them = fit_robust(m, y, with_gamma=fit.k == 3).law.beta
    outliers = [
        Outlier(data_size=number(m[i]), loss=float(y[i]), residual_sd=z) for i, z in flagged
    ]
    named = ", ".join(
        f"m = {o.data_size:g} (loss {o.loss:.4g}, {abs(o.residual_sd):.1f} robust SDs "
        f"{'above' if o.residual_sd > 0 else 'below'} the curve of the other points)"
        for o in outliers
    )
    warning = (
        f"outlier(s) left out of the learning-curve fit: {named}; beta_g = "
        f"{fit.law.beta:.4g} without, {with_them:.4g} with them: check or re-run those trials"
    )
    return Sensitivity(outliers, with_them, [warning])


def flat_curve(m: Array, y: Array, confidence: float) -> tuple[CurveFit, OpenInterval]:
    """The log-log line through a curve that does not fall, with the t interval of its
    slope (open with fewer than 3 points). Its slope may be positive: that is the truth
    about a rising curve, where an exponent clipped below 0 would not be."""
    alpha, slope, _r2 = fit_log_linear(m, y)
    if not 0 < alpha < np.inf:
        raise FitError(
            f"the losses ({float(np.min(y)):.3g} to {float(np.max(y)):.3g}) rise so steeply "
            "that the log-log line through them leaves floating point: check the loss column"
        )
    lx = np.log(m)
    dx = lx - lx.mean()
    sse = float(np.sum((np.log(y) - np.log(alpha) - slope * lx) ** 2))
    fit = CurveFit(PowerLaw(alpha, slope, 0.0), sse, len(m), 2)
    if len(m) < 3:
        return fit, [None, None]
    se = float(np.sqrt(sse / (len(m) - 2) / float(dx @ dx)))
    t = float(stdtrit(len(m) - 2, (1.0 + confidence) / 2.0))
    return fit, [slope - t * se, slope + t * se]
