"""The adaptive design: which trials to train, decided from the results so far. Pure.

Data sizes are taken in increasing order; a *stage* is one data size. The first
``fullGridDataSizes`` stages train every listed model size. Stage k after them trains
the ``modelSizeWindow`` model sizes around the best model size predicted at its data
size by the fit of the stages before it: the fit through stage k-1 once that stage has
finished, and, so that stage k can start while k-1 still runs, the fit through stage
k-2. A stage's model sizes are the union of both windows, so *which* trials run never
depends on *when* results arrived, only on the results: a restarted operator, a resumed
local run and an uninterrupted run decide the same (only a stop can find a trial of
the next stage already started: it is cancelled, or left out of the fit if it finished).

Within a stage, once its trials have finished: while the best model is at the edge of
the sizes trained there, the next size in that direction is added (beyond the listed
sizes only with extendModelSizes); with ``seeds > 1`` the extra seeds go to the two best
model sizes when they are within noise of each other (2 standard deviations of log loss
between seeds, pooled over the earlier stages; before any cell has two seeds, always).

After a finished stage the study stops (``TargetReached``) when every ``stopWhen``
criterion holds for the fit through it and at least ``minDataSizes`` stages are in. It
also stops (``GridShareSpent``) before a stage, from the sixth on, whose window would
take the expected compute of everything planned above ``computeShare`` of the full
grid's, once the fit through the stages before predicts the loss at the largest listed
data size tightly enough (``SHARE_PREDICTION_WIDTH``): where the best model grows into
the grid's most expensive corner, the loss there is predicted, not trained.

The fits themselves are numerical and are made by the executor (the local runner in
process, the operator in its fit child process): this module asks for the fit through a
data size (``fit_needed``) and is called again with it (``fits``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scalingstudy.planning.adaptive_rules import (
    Cell,
    criteria_met,
    grid_best,
    mean_log,
    predicted_index,
    seed_noise,
    window,
)
from scalingstudy.planning.cost import CostModel, devices_per_trial, parameter_counts
from scalingstudy.planning.plan import Trial, trial_name
from scalingstudy.spec import ScalingStudySpec
from scalingstudy.status import StageFit, StageWindow, StopReason, TrialRecord

#: Extra seeds go to the best two model sizes when their log losses are closer than
#: this many pooled seed standard deviations.
AMBIGUITY_SIGMAS = 2.0
#: A fit needs results at 3 data sizes.
MIN_FIT_STAGES = 3
#: computeShare stops no study before this many data sizes (a fit through them predicts
#: the rest; with fewer the prediction would rest on the smallest subsets alone).
MIN_SHARE_STAGES = 5
#: ... and none whose prediction at the largest listed data size is wider than this
#: (interval width over the loss): a prediction that vague is not worth the compute saved,
#: and the study trains on past computeShare.
SHARE_PREDICTION_WIDTH = 0.5

#: The noise of the earlier stages is not known yet (one of them is still running).
_WAIT = object()


@dataclass(frozen=True)
class Adaptive:
    """The trials decided so far, in stage order, and what the decision waits for."""

    trials: tuple[Trial, ...]
    windows: tuple[StageWindow, ...]
    #: The data size through which a fit is needed to decide further (None: none).
    fit_needed: int | None
    #: Every stage is decided: once the trials finish, the study is done.
    complete: bool
    #: The stop criteria held after the stage of this data size.
    stopped_at: int | None = None
    #: Trials of each stage, by data size (for the fit through a stage).
    stages: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: Why it stopped (with ``stopped_at``).
    stop_reason: StopReason | None = None


@dataclass(frozen=True)
class _Known:
    """What every stage's decision reads: the spec's sizes and the results so far."""

    study: str
    spec: ScalingStudySpec
    records: Mapping[str, TrialRecord]
    fits: Mapping[int, StageFit]
    data_sizes: list[int]
    models: list[int]
    listed: int
    reachable: int
    cells: dict[Cell, list[TrialRecord]]
    by_coords: dict[tuple[int, int, int], TrialRecord]
    sizes: list[float]
    share: _Share | None

    @classmethod
    def of(
        cls,
        study: str,
        spec: ScalingStudySpec,
        records: Mapping[str, TrialRecord],
        fits: Mapping[int, StageFit],
    ) -> _Known:
        data_sizes = spec.data_sizes.sizes()
        models = spec.model_size_candidates()
        listed = len(spec.model_sizes.sizes())
        cells: dict[Cell, list[TrialRecord]] = {}
        for r in records.values():
            cells.setdefault((r.data_size, r.model_size), []).append(r)
        # Parameter counts from the full-grid stages only (every listed size trained
        # there), extension sizes always extrapolated: the same counts whenever later
        # trials ended.
        full = set(data_sizes[: spec.design.full_grid_data_sizes])
        full_records = [r for r in records.values() if r.data_size in full]
        params = parameter_counts(full_records, models)
        return cls(study, spec, records, fits, data_sizes, models, listed,
                   len(models) if spec.design.extend_model_sizes else listed, cells,
                   {(r.data_size, r.model_size, r.seed): r for r in records.values()},
                   [params[m] for m in models],
                   _Share.of(spec, full_records, params))  # fmt: skip


@dataclass
class _Decided:
    """The stages decided so far, in order, and the fit the decision waits for."""

    trials: list[Trial] = field(default_factory=list)
    windows: list[StageWindow] = field(default_factory=list)
    stages: dict[int, tuple[str, ...]] = field(default_factory=dict)
    finished: list[bool] = field(default_factory=list)
    fit_needed: int | None = None

    def fit_through(self, known: _Known, d: int) -> StageFit | None:
        """The fit through ``d`` when it was made of the results there are now (a spec
        change or a lost status row makes it stale: it is asked for again)."""
        fit = known.fits.get(d)
        names = [n for ds, ns in self.stages.items() if ds <= d for n in ns]
        found = [known.records.get(n) for n in names]
        ok = sum(1 for r in found if r is not None and r.status == "Succeeded")
        if fit is None or fit.results != ok:
            self.fit_needed = d if self.fit_needed is None else min(self.fit_needed, d)
            return None
        return fit

    def add(self, known: _Known, d: int, stage: _Stage) -> None:
        names = [trial_name(known.study, d, m, s) for m, s in stage.coords]
        self.trials += [Trial(d, m, s, n) for (m, s), n in zip(stage.coords, names, strict=True)]
        self.stages[d] = tuple(names)
        sizes = sorted({m for m, _ in stage.coords})
        self.windows.append(StageWindow(data_size=d, model_sizes=sizes))
        self.finished.append(stage.finished)

    def result(self, known: _Known, stopped_at: int | None, reason: StopReason | None) -> Adaptive:
        if reason is not None:
            return Adaptive(tuple(self.trials), tuple(self.windows), None, True, stopped_at,
                            self.stages, reason)  # fmt: skip
        complete = len(self.finished) == len(known.data_sizes) and all(self.finished)
        return Adaptive(tuple(self.trials), tuple(self.windows), self.fit_needed, complete,
                        None, self.stages)  # fmt: skip


def decide_adaptive(
    study: str,
    spec: ScalingStudySpec,
    records: Mapping[str, TrialRecord],
    fits: Mapping[int, StageFit],
) -> Adaptive:
    """The trials to train now (see the module's description)."""
    known = _Known.of(study, spec, records, fits)
    done = _Decided()
    for k, d in enumerate(known.data_sizes):
        chosen = _chosen_sizes(known, done, k)
        if not chosen:
            break  # stage k cannot be decided yet, nor any after it
        # Seeds are decided on the noise of the finished stages before this one, so a
        # stage that finishes first waits for them.
        noise = seed_noise(known.cells, set(known.data_sizes[:k])) if all(done.finished) else _WAIT
        stage = _settle(d, sorted(chosen), known, noise)
        share = _share_verdict(known, done, k, stage)
        if share == "wait":
            break
        if share == "stop":
            return done.result(known, known.data_sizes[k - 1], "GridShareSpent")
        done.add(known, d, stage)
        if _target_reached(known, done, k):
            # Trials of later stages are no longer planned: running ones are cancelled,
            # finished ones stay in the records but out of the fit (a stage with only
            # some of its model sizes would misstate the best loss there), so the final
            # fit is the same whenever they happened to finish.
            return done.result(known, d, "TargetReached")
    return done.result(known, None, None)


def _chosen_sizes(known: _Known, done: _Decided, k: int) -> set[int]:
    """The model-size indices stage ``k`` trains before growth and seeds: every listed
    one in the full-grid stages, later the union of the windows the fits through k-2 and
    k-1 predict (empty: not decidable yet)."""
    if k < known.spec.design.full_grid_data_sizes:
        return set(range(known.listed))
    chosen: set[int] = set()
    for j in (k - 2, k - 1):
        if j < MIN_FIT_STAGES - 1 or not all(done.finished[: j + 1]):
            continue
        fit = done.fit_through(known, known.data_sizes[j])
        if fit is None:
            continue
        centre = predicted_index(fit, known.data_sizes[k], known.sizes)
        if centre is None:  # no parameter counts: follow the best grid point
            best = grid_best(known.cells, known.data_sizes[j], known.models[: known.reachable])
            centre = float(best if best is not None else (known.listed - 1) / 2)
        chosen |= set(window(centre, known.spec.design.model_size_window, known.reachable))
    return chosen


def _share_verdict(known: _Known, done: _Decided, k: int, stage: _Stage) -> str:
    """computeShare before stage ``k``: "go" (train it), "wait" (nothing of it starts
    until the fit through the stage before is in) or "stop" (predict the rest)."""
    design = known.spec.design
    if (
        k < max(design.full_grid_data_sizes, MIN_SHARE_STAGES)
        or done.fit_needed is not None
        or known.share is None
        or not known.share.exceeded(done.trials, known.data_sizes[k], stage.coords)
    ):
        return "go"
    if not all(done.finished):
        return "wait"
    fit = done.fit_through(known, known.data_sizes[k - 1])
    if fit is None:
        return "wait"
    width = fit.largest_relative_width
    return "stop" if width is not None and width <= SHARE_PREDICTION_WIDTH else "go"


def _target_reached(known: _Known, done: _Decided, k: int) -> bool:
    """Every stopWhen criterion holds for the fit through finished stage ``k``."""
    stop = known.spec.design.stop_when
    last = k + 1 == len(known.data_sizes)
    if stop is None or last or k + 1 < stop.min_data_sizes or not all(done.finished):
        return False
    fit = done.fit_through(known, known.data_sizes[k])
    return fit is not None and criteria_met(fit, stop)


@dataclass(frozen=True)
class _Share:
    """computeShare: the expected cost of what the design plans, against the full grid's
    (both from the cost model of the full-grid stages, which have all finished when
    it is asked: the same answer whenever later trials end)."""

    cost: CostModel
    params: Mapping[int, float]
    limit: float

    @classmethod
    def of(
        cls, spec: ScalingStudySpec, full: list[TrialRecord], params: Mapping[int, float]
    ) -> _Share | None:
        """None without a limit (share 1) or a cost model."""
        cost = CostModel.fitted(full, devices_per_trial(spec), params)
        if spec.design.share >= 1 or cost is None:
            return None
        grid = sum(
            cost.expected(d, params.get(m, m))
            for d in spec.data_sizes.sizes()
            for m in spec.model_sizes.sizes()
        )
        return cls(cost, params, spec.design.share * grid * spec.seeds)

    def exceeded(self, trials: list[Trial], d: int, coords: tuple[tuple[int, int], ...]) -> bool:
        """Stage ``d`` with ``coords`` would take the planned compute above the limit."""
        planned = sum(self.cost.expected(t.data_size, self.params.get(t.model_size, t.model_size))
                      for t in trials)  # fmt: skip
        stage = sum(self.cost.expected(d, self.params.get(m, m)) for m, _ in coords)
        return planned + stage > self.limit


@dataclass(frozen=True)
class _Stage:
    coords: tuple[tuple[int, int], ...]  # (model size, seed), in order
    finished: bool


def _settle(d: int, chosen: list[int], known: _Known, noise: float | object | None) -> _Stage:
    """A stage's trials: the chosen model sizes (indices into ``known.models``, made
    contiguous), grown at the edge where the best is, with extra seeds where the best is
    ambiguous; finished when every one of them has a record and nothing more is added.
    A model size whose extra seeds already ran keeps them when the best two change (they
    are results of this stage: out of the plan they would leave the fit, while still
    moving the noise estimate)."""
    models, seeds = known.models, known.spec.seeds
    lo, hi = min(chosen), max(chosen)
    # model indices with every seed: those that ran one already
    extra = {i for i in range(len(models))
             if any((d, models[i], s) in known.by_coords for s in range(1, seeds))}  # fmt: skip
    lo, hi = min([lo, *extra]), max([hi, *extra])

    def planned() -> list[tuple[int, int]]:
        return [(i, s) for i in range(lo, hi + 1) for s in (range(seeds) if i in extra else [0])]

    while True:
        coords = planned()
        if any((d, models[i], s) not in known.by_coords for i, s in coords):
            break
        ranked = sorted(
            (v, i)
            for i in range(lo, hi + 1)
            if (v := mean_log(known.cells.get((d, models[i]), []))) is not None
        )
        if not ranked:
            break
        best = ranked[0][1]
        # A failed neighbour is never best: growth past it ends there.
        if best == hi and hi + 1 < known.reachable:
            hi += 1
            continue
        if best == lo and lo > 0:
            lo -= 1
            continue
        if seeds > 1 and len(ranked) >= 2:
            if noise is _WAIT:
                break
            assert noise is None or isinstance(noise, float)
            close = noise is None or ranked[1][0] - ranked[0][0] < AMBIGUITY_SIGMAS * noise
            wanted = {ranked[0][1], ranked[1][1]} if close else set()
            if not wanted <= extra:
                extra |= wanted
                continue
        return _Stage(tuple((models[i], s) for i, s in coords), True)
    return _Stage(tuple((models[i], s) for i, s in planned()), False)
