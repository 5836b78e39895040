"""The study's design, shared by both executors: which trials may start now (the grid or
the adaptive choice, within the budget), whether more may come, why the study stops, and
what it spent against the full grid. Pure: spec, results, running trials and the fits
asked for in; the decision out."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from scalingstudy.planning.adaptive import decide_adaptive
from scalingstudy.planning.cost import CostModel, Devices, measured, parameter_counts, trial_devices
from scalingstudy.planning.isoflop import isoflop_plan
from scalingstudy.planning.plan import Plan, Trial, plan_trials
from scalingstudy.results import best_learning_rates
from scalingstudy.spec import ScalingStudySpec
from scalingstudy.status import (
    CancelledRun,
    DesignStatus,
    StageFit,
    StageWindow,
    StopReason,
    TrialRecord,
)


@dataclass(frozen=True)
class Design:
    #: Trials that may run: recorded, running, or affordable and decided.
    plan: Plan
    #: Trials may still be added to the plan (the design waits for results or a fit).
    more: bool
    #: The data size through which the executor must fit before deciding further.
    fit_needed: int | None
    stop_reason: StopReason | None
    status: DesignStatus
    #: The records a fit through ``fit_needed`` uses (succeeded or not).
    prefix: tuple[TrialRecord, ...] = ()
    #: Trial names of the full grid of listed sizes.
    grid: frozenset[str] = frozenset()

    def started(self, created: Collection[Trial]) -> DesignStatus:
        """The status once ``created`` (not running before this decision) have started."""
        new = [t for t in created if t.name in self.plan]
        return self.status.model_copy(
            update={
                "trials_started": self.status.trials_started + len(new),
                "trials_skipped": self.status.trials_skipped
                - sum(1 for t in new if t.name in self.grid),
            }
        )


@dataclass(frozen=True)
class _Wanted:
    """The trials the design wants now, before the budget: the grid, or the adaptive
    design's choice with its windows, the stage fit it waits for and why it stopped."""

    trials: Sequence[Trial]
    more: bool
    windows: tuple[StageWindow, ...] = ()
    fit_needed: int | None = None
    stopped: StopReason | None = None
    prefix: tuple[TrialRecord, ...] = ()


def _wanted(
    study: str, spec: ScalingStudySpec, records: Mapping[str, TrialRecord],
    fits: Mapping[int, StageFit], grid: list[Trial],
) -> _Wanted:  # fmt: skip
    if not spec.design.adaptive:
        return _Wanted(grid, False)
    chosen = decide_adaptive(study, spec, records, fits)
    prefix: tuple[TrialRecord, ...] = ()
    if chosen.fit_needed is not None:
        names = {n for d, ns in chosen.stages.items() if d <= chosen.fit_needed for n in ns}
        prefix = tuple(records[n] for n in sorted(names) if n in records)
    return _Wanted(chosen.trials, not chosen.complete, chosen.windows, chosen.fit_needed,
                   chosen.stop_reason, prefix)  # fmt: skip


def _within_budget(
    wanted: Sequence[Trial], records: Mapping[str, TrialRecord], active: Collection[str],
    expected: Callable[[Trial], float], spent: float, budget: float | None,
) -> tuple[list[Trial], bool]:  # fmt: skip
    """The wanted trials that fit the budget, in order (recorded and running ones always),
    and whether the budget stopped one: no later trial starts then either."""
    kept: list[Trial] = []
    blocked = False
    committed = spent + sum(
        expected(t) for t in wanted if t.name in active and t.name not in records
    )
    for t in wanted:
        if t.name in records or t.name in active:
            kept.append(t)
            continue
        cost_of = expected(t)
        if not blocked and (budget is None or committed + cost_of <= budget):
            kept.append(t)
            committed += cost_of
        else:
            blocked = True
    return kept, blocked


def design(
    study: str,
    spec: ScalingStudySpec,
    records: Mapping[str, TrialRecord],
    active: Collection[str],
    fits: Mapping[int, StageFit],
    cancelled: Sequence[CancelledRun] = (),
    cancelled_seconds: float = 0.0,
) -> Design:
    """The decision of this moment (see the module's description). ``cancelled`` and
    ``cancelled_seconds``: runs deleted before they ended (status.design.cancelled and
    cancelledSeconds), spent all the same."""
    grid = plan_trials(study, spec)
    want = _wanted(study, spec, records, fits, grid)
    kind = trial_devices(spec)
    devices = kind.count
    sizes = parameter_counts(records.values(), spec.model_size_candidates())
    # The trials of its sizes that ran, also one a stop left out of the plan (not a trial
    # of an earlier spec's sizes): what prices the rest, and trialsStarted.
    data_sizes, seeds = set(spec.data_sizes.sizes()), spec.seeds
    names = {t.name for t in grid}
    ran = [r for r in records.values()
           if (r.trial in names if spec.design.isoflop else r.data_size in data_sizes)
           and r.model_size in sizes and r.seed < seeds]  # fmt: skip
    cost = CostModel.fitted(ran, devices, sizes)
    # Spent: every run, as the trials used it: also trials an edit has since dropped from
    # the grid (their records stay), and runs deleted before they ended.
    lost = (cancelled_seconds + sum(c.seconds for c in cancelled)) * devices
    lost += sum(measured(r, devices) for r in records.values() if r.trial not in names)
    spent = sum(measured(r, devices) for r in records.values() if r.trial in names) + lost

    def expected(t: Trial) -> float:
        """Device-seconds a trial is expected to take (0 while no cost is known)."""
        if cost is None:
            return 0.0
        return cost.expected(t.data_size, sizes.get(t.model_size, t.model_size))

    budget = None if spec.design.budget is None else spec.design.budget.hours() * 3600.0
    kept, blocked = _within_budget(want.trials, records, active, expected, spent, budget)
    more = want.more and not blocked
    finished = not more and want.fit_needed is None and all(t.name in records for t in kept)
    reason: StopReason | None = (
        want.stopped if want.stopped
        else "BudgetSpent" if blocked
        else "AllDataSizes" if finished
        else None
    )  # fmt: skip
    started = {r.trial for r in ran} | set(active)
    estimate = None
    if cost is not None:
        estimate = lost + sum(
            measured(records[t.name], devices) if t.name in records else expected(t) for t in grid
        )
    status = DesignStatus(
        strategy=spec.design.strategy,
        trials_started=len(started),
        grid_trials=len(grid),
        trials_skipped=sum(1 for t in grid if t.name not in started),
        **_spend(kind, spent, estimate, budget),
        stop_reason=reason,
        windows=list(want.windows),
        out_of_range=list(isoflop_plan(spec).skipped) if spec.design.isoflop else [],
        stage_fits=[fits[d] for d in sorted(fits)] if spec.design.adaptive else [],
        learning_rates=best_learning_rates(records[t.name] for t in kept if t.name in records),
        cancelled=list(cancelled),
        cancelled_seconds=round(cancelled_seconds, 3),
    )
    return Design(Plan(tuple(kept)), more or want.fit_needed is not None, want.fit_needed,
                  reason, status, want.prefix, frozenset(names))  # fmt: skip


def _spend(
    kind: Devices, spent: float, estimate: float | None, budget: float | None
) -> dict[str, object]:
    """The status' spend fields: device-seconds in the unit the trials request, and the
    GPU-seconds fields that dashboards read (0, or no budget, for a CPU study)."""
    gpu = kind.kind == "gpu"
    grid = None if estimate is None else round(estimate, 1)
    return {
        "device": kind.kind,
        "device_seconds": round(spent, 1),
        "grid_device_seconds": grid,
        "budget_device_seconds": budget,
        "gpu_seconds": round(spent, 1) if gpu else 0.0,
        "grid_gpu_seconds": grid if gpu or grid is None else 0.0,
        "budget_gpu_seconds": budget if gpu else None,
        "spend": None if not estimate else f"{100.0 * spent / estimate:.0f}%",
    }
