"""What the fit makes of finished trials: shared by the local runner (records on disk)
and the operator (records in status.results)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from scalingstudy.fitting import FitError, FitOptions, FitUnavailableError, Point
from scalingstudy.fitting.points import best_rate_per_cell
from scalingstudy.fitting.report import FitReport
from scalingstudy.planning.isoflop import (
    compute_of,
    fit_parameters,
    parameter_warnings,
    planned_parameters,
)
from scalingstudy.planning.plan import plan_trials
from scalingstudy.spec import ScalingStudySpec
from scalingstudy.status import LearningRateChoice, StageFit, TrialRecord
from scalingstudy.words import plural

Fitter = Callable[[Sequence[Point], FitOptions], FitReport]

#: Why a finished study has no fit, in both executors.
NOT_FITTABLE = "fewer than 3 data sizes have a succeeded trial"


def points_of(records: Iterable[TrialRecord], spec: ScalingStudySpec | None = None) -> list[Point]:
    """The fit's input from succeeded records, in grid order: the fit (its bootstrap draws
    rows by position) is then a function of the results, not of the order trials ended
    in, and the local runner and the operator agree on the same results. In a
    learning-rate sweep only the best learning rate of each (data size, model size)
    counts (`best_learning_rates`): the fit sees one configuration per cell. An IsoFLOP
    ``spec`` gives each point its compute, C = k N D, N its planned parameter count."""
    kept = list(records)
    best = {(c.data_size, c.model_size): c.learning_rate for c in best_learning_rates(kept)}
    ordered = sorted(kept, key=lambda r: (r.data_size, r.model_size, r.seed, r.trial))
    iso = spec if spec is not None and spec.design.isoflop else None
    planned = planned_parameters(spec) if spec is not None else {}
    return [
        Point(
            data_size=float(r.data_size),
            loss=r.loss,
            model_size=float(r.model_size),
            seed=str(r.seed),
            parameters=fit_parameters(planned, r.model_size, r.parameters),
            compute=compute_of(iso, r.data_size, r.model_size) if iso else None,
        )
        for r in ordered
        if r.status == "Succeeded"
        and r.loss is not None
        and best.get((r.data_size, r.model_size), r.learning_rate) == r.learning_rate
    ]


def best_learning_rates(records: Iterable[TrialRecord]) -> list[LearningRateChoice]:
    """Per (data size, model size) of a sweep, the learning rate with the lowest mean log
    loss over its succeeded seeds, and whether it is the smallest or largest tried there
    (the optimum may lie beyond: widen the sweep). Empty without a sweep."""
    kept = [r for r in records if r.learning_rate is not None]
    tried: dict[tuple[float, float | None], set[float]] = {}
    for r in kept:
        tried.setdefault((r.data_size, r.model_size), set()).add(r.learning_rate or 0.0)
    best = best_rate_per_cell(
        ((r.data_size, r.model_size), r.learning_rate, r.loss or 0.0)
        for r in kept
        if r.status == "Succeeded"
    )
    out = []
    for key in sorted(best, key=lambda k: (k[0], k[1] or 0)):
        lr, rates = best[key], tried[key]
        out.append(
            LearningRateChoice(
                data_size=int(key[0]), model_size=int(key[1] or 0), learning_rate=lr,
                at_edge=len(rates) > 1 and lr in (min(rates), max(rates)),
            )
        )  # fmt: skip
    return out


def planned_records(
    study: str, spec: ScalingStudySpec, records: Iterable[TrialRecord]
) -> list[TrialRecord]:
    """The records of trials the spec plans now: what the fit and results.csv read, the
    same in `run`, the operator and `get`. A trial the spec no longer plans (a data size
    cut from the range, a value removed from a list) stays in the record (status.results,
    the run's record files) but out of the fit. An adaptive design plans more than the
    listed grid (extra seeds, model sizes it extends to): there a record counts while its
    data size, learning rate and model size are still ones the spec allows."""
    planned = planned_trial(study, spec)
    return [r for r in records if planned(r.trial, r.data_size, r.model_size, r.learning_rate)]


def planned_trial(study: str, spec: ScalingStudySpec) -> Callable[[str, int, int, float | None],
                                                                   bool]:  # fmt: skip
    """Whether the spec plans a trial now, by (name, data size, model size, rate): the
    test `planned_records` applies to records, for what is not a record yet (a running
    Job whose value an edit removed is no one's rival either)."""
    if not spec.design.adaptive:
        names = {t.name for t in plan_trials(study, spec)}
        return lambda name, *_: name in names
    sizes, models = set(spec.data_sizes.sizes()), set(spec.model_size_candidates())
    rates = set(spec.learning_rate_values())
    return lambda _, d, m, lr: d in sizes and m in models and lr in rates


def fit_options(spec: ScalingStudySpec) -> FitOptions:
    """The study's fit settings; without predictAt, predict at 10x the largest data size
    (and an adaptive study, which may stop before it, at the largest one too). The joint
    fit in model size and data needs a grid of at least 3 x 3."""
    largest = spec.data_sizes.sizes()[-1]
    predict_at = spec.fit.predict_at or [10 * largest, *([largest] if spec.design.adaptive else [])]
    return FitOptions(
        form=spec.fit.form,
        confidence=spec.fit.confidence,
        bootstrap=spec.fit.bootstrap,
        predict_at=tuple(float(x) for x in predict_at),
        target_loss=spec.fit.target_loss,
        joint=len(spec.model_sizes.sizes()) >= 3,
        flops_per_parameter_per_item=spec.design.flops_per_parameter_per_item,
    )


def stage_options(spec: ScalingStudySpec) -> FitOptions:
    """A stage fit predicts at the largest listed data size (for
    stopWhen.largestDataSizeRelativeWidth), then at the study's first predictAt (for
    stopWhen.predictionRelativeWidth); it leaves out the joint law, which no decision
    reads (and which took most of a stage fit's time)."""
    options = fit_options(spec)
    largest = float(spec.data_sizes.sizes()[-1])
    return dataclasses.replace(options, predict_at=(largest, options.predict_at[0]), joint=False)


def fit_input(
    records: Iterable[TrialRecord], spec: ScalingStudySpec
) -> tuple[list[Point], FitOptions]:
    """The study's fit input from its (planned) records, the same for `run`, the operator,
    `get` and `fit --study`: the points, and the study's fit options with the input's
    caveats (a reported parameter count that disagrees with the planned one) as notes."""
    kept = list(records)
    succeeded = [r for r in kept if r.status == "Succeeded"]
    sizes = ((r.model_size, r.parameters) for r in succeeded)
    notes = (
        *parameter_warnings(planned_parameters(spec), sizes),
        *trainer_warnings(succeeded),
        *pruned_warnings(kept),
    )
    return points_of(kept, spec), dataclasses.replace(fit_options(spec), notes=notes)


def pruned_warnings(records: Sequence[TrialRecord]) -> list[str]:
    """How many trials pruning stopped: the fit leaves them out (a pruned trial never
    finished, so its best loss so far is no final loss, and it was not the best of its
    slot), and its reader must know the points it does not see."""
    pruned = [r.trial for r in records if r.status == "Pruned"]
    if not pruned:
        return []
    shown = ", ".join(pruned[:3]) + (", ..." if len(pruned) > 3 else "")
    return [
        f"{plural(len(pruned), 'trial')} pruned ({shown}): left out of the fit, as trials "
        "that could not win their slot and never finished"
    ]


def trainer_warnings(records: Sequence[TrialRecord]) -> list[str]:
    """What the trainers said of their own results that the fit's reader must know: a
    BatchNorm model whose micro-batch an out-of-memory cut (its normalisation batch, so
    its loss), a trial whose loss diverged (its result is the best evaluation before)."""
    out = []
    changed = [r.trial for r in records if r.normalisation_batch_changed]
    if changed:
        out.append(
            f"{len(changed)} trial(s) of a BatchNorm model ran a smaller micro-batch after an "
            f"out-of-memory ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}): "
            "their normalisation batch, and so their loss, differs from the planned batch's"
        )
    diverged = [r for r in records if r.diverged_at_step is not None]
    if diverged:
        first = diverged[0]
        out.append(
            f"{len(diverged)} trial(s) diverged (e.g. {first.trial} from step "
            f"{first.diverged_at_step}): each reports its best evaluation before; a lower "
            "learning rate may give a lower loss"
        )
    return out


def fittable(records: Iterable[TrialRecord]) -> bool:
    """At least 3 data sizes have a succeeded trial."""
    return len({r.data_size for r in records if r.status == "Succeeded"}) >= 3


def stage_fit(
    prefix: Iterable[TrialRecord], spec: ScalingStudySpec, data_size: int, fitter: Fitter
) -> StageFit:
    """The fit through one data size the adaptive design asked for (`design.Design`), in
    the executor's way of fitting; a fit that cannot be made says nothing (no law, no
    interval), so the design follows the best grid point and does not stop on it. A fit
    that ran to no answer (FitUnavailableError) is raised: the executor tries it again later,
    so the operator (fits in a child process) and the local runner (in process) decide
    alike from the same results."""
    records = list(prefix)
    points = points_of(records, spec)
    n = len(points)
    if not fittable(records):
        return StageFit(data_size=data_size, results=n)
    try:
        return StageFit.of(fitter(points, stage_options(spec)), data_size, n)
    except FitUnavailableError:
        raise
    except FitError:
        return StageFit(data_size=data_size, results=n)
