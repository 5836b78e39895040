"""What the fit makes of finished trials: shared by the local runner (records on disk)
and the operator (records in status.results)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from scalingstudy.fitting import FitError, FitOptions, Point
from scalingstudy.fitting.report import FitReport
from scalingstudy.spec import ScalingStudySpec
from scalingstudy.status import StageFit, TrialRecord

Fitter = Callable[[Sequence[Point], FitOptions], FitReport]

#: Why a finished study has no fit, in both executors.
NOT_FITTABLE = "fewer than 3 data sizes have a succeeded trial"


def points_of(records: Iterable[TrialRecord]) -> list[Point]:
    """The fit's input from succeeded records, in grid order: the fit (its bootstrap draws
    rows by position) is then a function of the results, not of the order trials ended
    in, and the local runner and the operator agree on the same results."""
    ordered = sorted(records, key=lambda r: (r.data_size, r.model_size, r.seed, r.trial))
    return [
        Point(
            data_size=float(r.data_size),
            loss=r.loss,
            model_size=float(r.model_size),
            seed=str(r.seed),
            parameters=r.parameters,
        )
        for r in ordered
        if r.status == "Succeeded" and r.loss is not None
    ]


def fit_options(spec: ScalingStudySpec) -> FitOptions:
    """The study's fit settings; without predictAt, predict at 10x the largest data size.
    The joint fit in model size and data needs a grid of at least 3 x 3."""
    predict_at = spec.fit.predict_at or [10 * spec.data_sizes.sizes()[-1]]
    return FitOptions(
        form=spec.fit.form,
        confidence=spec.fit.confidence,
        bootstrap=spec.fit.bootstrap,
        predict_at=tuple(float(x) for x in predict_at),
        target_loss=spec.fit.target_loss,
        joint=len(spec.model_sizes.sizes()) >= 3,
    )


def fittable(records: Iterable[TrialRecord]) -> bool:
    """At least 3 data sizes have a succeeded trial."""
    return len({r.data_size for r in records if r.status == "Succeeded"}) >= 3


def stage_fit(
    prefix: Iterable[TrialRecord], spec: ScalingStudySpec, data_size: int, fitter: Fitter
) -> StageFit:
    """The fit through one data size the adaptive design asked for (`design.Design`), in
    the executor's way of fitting; a fit that cannot be made says nothing (no law, no
    interval), so the design follows the best grid point and does not stop on it."""
    records = list(prefix)
    points = points_of(records)
    n = len(points)
    if not fittable(records):
        return StageFit(data_size=data_size, results=n)
    try:
        return StageFit.of(fitter(points, fit_options(spec)), data_size, n)
    except FitError:
        return StageFit(data_size=data_size, results=n)
