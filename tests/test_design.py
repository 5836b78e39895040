"""The study's design, decided without I/O: grid, adaptive windows, edge growth, seeds,
the stop rule, the budget, and the order-independence that makes it restart-safe."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.scaling_truth import DATA_SIZES, MODEL_SIZES, Truth, parameters, random_truth
from scalingstudy.cluster.study_events import design_events
from scalingstudy.fitting import fit_points
from scalingstudy.planning.adaptive import predicted_index, window
from scalingstudy.planning.cost import CostModel, parameter_counts
from scalingstudy.planning.design import design
from scalingstudy.planning.plan import Trial, plan_trials
from scalingstudy.results import fit_options, points_of, stage_fit
from scalingstudy.spec import ScalingStudySpec, SpecError, parse_spec
from scalingstudy.status import DesignStatus, StageFit, StageWindow
from tests.design_loop import moments, record, run

DATA = [1000, 2000, 4000, 8000, 16000, 32000]
MODELS = [4, 8, 16, 32, 64, 128]


def spec_of(**design_spec: Any) -> ScalingStudySpec:
    extra = design_spec.pop("spec", {})
    return parse_spec(
        {
            "task": {"name": "simulated"},
            "trainer": {"command": ["simulated"]},
            "dataSizes": {"values": DATA},
            "modelSizes": {"values": MODELS},
            "fit": {"bootstrap": 40},
            "design": design_spec,
            **extra,
        }
    )


def truth_loss(truth: Truth) -> Callable[[Trial], float]:
    return lambda t: truth.loss(t.model_size, t.data_size, t.seed)


TRUTH = random_truth(2)


def test_grid_design_is_the_full_grid_and_ends_with_all_data_sizes() -> None:
    spec = spec_of()
    records, final, _ = run(spec, truth_loss(TRUTH))
    assert len(records) == len(DATA) * len(MODELS)
    assert [t.name for t in final.plan] == [t.name for t in plan_trials("s", spec)]
    assert final.stop_reason == "AllDataSizes"
    assert final.status.trials_skipped == 0 and final.status.spend == "100%"


def test_adaptive_trains_the_full_grid_first_then_a_window_around_the_best() -> None:
    spec = spec_of(strategy="adaptive", modelSizeWindow=3, computeShare=1)
    records, final, seen = run(spec, truth_loss(TRUTH))
    windows = {w.data_size: w.model_sizes for w in final.status.windows}
    assert all(windows[d] == MODELS for d in DATA[:3])
    for d in DATA[3:]:
        sizes = windows[d]
        assert 3 <= len(sizes) < len(MODELS), (d, sizes)
        # the window brackets the truth's best parameter count (log-distance within a step)
        best = TRUTH.best_parameters(d)
        assert min(abs(math.log(parameters(m) / best)) for m in sizes) < math.log(4)
        # the best trained model is inside the window, not at its edge (edge growth)
        trained = {m: records[f"s-d{d}-m{m}-s0"].loss for m in sizes}
        best_m = min(trained, key=lambda m: trained[m] or 0)
        assert best_m not in (sizes[0], sizes[-1]) or best_m in (MODELS[0], MODELS[-1])
    assert final.stop_reason == "AllDataSizes"
    assert final.status.trials_started == len(records) < len(DATA) * len(MODELS)
    # the stage after the full grid waited for the fit through the third data size
    assert any(d.status.stage_fits and d.status.stage_fits[0].data_size == DATA[2] for d in seen)


def test_adaptive_decisions_do_not_depend_on_the_order_results_arrive_in() -> None:
    """What makes restarts free of surprises: the same results, the same trials."""
    spec = spec_of(strategy="adaptive", spec={"seeds": 2})
    runs = []
    for seed in (0, 1, 2):
        rng = random.Random(seed)
        records, final, _ = run(
            spec, truth_loss(TRUTH), order=lambda ts, r=rng: r.sample(ts, len(ts)),  # type: ignore[misc]
            parallelism=1 + seed * 3,
        )  # fmt: skip
        runs.append((sorted(records), final.status.windows))
    assert runs[0] == runs[1] == runs[2]


def test_a_restart_decides_exactly_what_the_uninterrupted_run_decided() -> None:
    spec = spec_of(strategy="adaptive")
    run(spec, truth_loss(TRUTH))
    for middle, known, running in moments[:: max(len(moments) // 6, 1)]:
        # a fresh process knows only the recorded results and running trials: it refits
        # the stages (no fits given) and must reach the same plan
        fresh_fits: dict[int, StageFit] = {}
        while True:
            again = design("s", spec, known, running, fresh_fits)
            if again.fit_needed is None:
                break
            fresh_fits[again.fit_needed] = stage_fit(again.prefix, spec, again.fit_needed,
                                                     fit_points)  # fmt: skip
        assert [t.name for t in again.plan] == [t.name for t in middle.plan]


def test_the_window_grows_at_its_edge_and_beyond_the_grid_only_when_allowed() -> None:
    # the best model is always the largest: growth upward until the grid ends
    def bigger_is_better(t: Trial) -> float:
        return 1.0 + 10.0 / t.data_size**0.3 + 1.0 / t.model_size

    plain = spec_of(strategy="adaptive", computeShare=1)
    records, final, _ = run(plain, bigger_is_better)
    assert all(w.model_sizes[-1] == MODELS[-1] for w in final.status.windows)
    assert max(r.model_size for r in records.values()) == MODELS[-1]
    extended = spec_of(strategy="adaptive", extendModelSizes=True, maxModelSize=600, computeShare=1)
    assert extended.model_size_candidates() == [*MODELS, 256, 512]
    records, final, _ = run(extended, bigger_is_better)
    assert {512} <= {r.model_size for r in records.values()}
    assert max(r.model_size for r in records.values()) == 512
    events = design_events(None, final.status, MODELS[-1])
    assert any(e.reason == "GridExtended" for e in events)


def test_extra_seeds_go_to_the_two_best_model_sizes_when_they_are_close() -> None:
    spec = spec_of(strategy="adaptive", computeShare=1, spec={"seeds": 3})

    def two_tied(t: Trial) -> float:  # 16 and 32 equally good everywhere, noise 1%
        base = {16: 1.0, 32: 1.0}.get(t.model_size, 1.5)
        return base * (1 + 0.01 * ((t.seed * 7 + t.model_size) % 3 - 1))

    records, _, _ = run(spec, two_tied)
    seeded = {(r.data_size, r.model_size) for r in records.values() if r.seed > 0}
    assert {(d, m) for d in DATA for m in (16, 32)} <= seeded
    assert all(m in (16, 32) for _, m in seeded)

    def clear(t: Trial) -> float:  # one clear best (16), 1% noise
        return (1.0 if t.model_size == 16 else 2.0) * (1 + 0.01 * (t.seed % 2))

    records, _, _ = run(spec, clear)
    extra = {(r.data_size, r.model_size) for r in records.values() if r.seed > 0}
    # only the first stage seeds its best two, to learn the noise; then none are close
    assert extra and {d for d, _ in extra} == {DATA[0]}


def test_a_seed_that_ran_stays_in_the_plan_when_the_best_two_change() -> None:
    """Extra seeds were chosen afresh each pass: once 32's extra seeds made it third,
    they left the plan (and the fit) while still moving the noise estimate."""
    spec = spec_of(strategy="adaptive", computeShare=1, spec={"seeds": 3})

    def overtaken(t: Trial) -> float:  # 32 looks second on seed 0, its other seeds are worse
        if t.model_size == 32:
            return 1.001 if t.seed == 0 else 1.1
        return {16: 1.0, 8: 1.002}.get(t.model_size, 1.5)

    records, final, _ = run(spec, overtaken)
    seeded = {r.trial for r in records.values() if r.seed > 0}
    assert {(records[n].data_size, records[n].model_size) for n in seeded} >= {
        (DATA[0], 32),
        (DATA[0], 8),
        (DATA[0], 16),
    }
    for chosen, known, _ in moments:  # never out of the plan, once it ran
        assert {n for n in known if n in seeded} <= chosen.plan.names
    assert set(records) <= final.plan.names  # every result is in the final fit


def test_a_precise_fit_stops_the_study_and_cancels_the_next_stage() -> None:
    spec = spec_of(strategy="adaptive", stopWhen={"betaIntervalWidth": 5.0, "minDataSizes": 4})
    records, final, seen = run(spec, truth_loss(TRUTH), parallelism=6)
    assert final.stop_reason == "TargetReached"
    assert {r.data_size for r in records.values()} <= set(DATA[:5])
    assert DATA[3] in {r.data_size for r in records.values()}
    stopped = [d for d in seen if d.stop_reason == "TargetReached"]
    stop_at = max(w.data_size for w in final.status.windows)
    # trials of later stages are no longer planned: running ones are cancelled, finished
    # ones kept out of the fit
    assert all(t.data_size <= stop_at for t in stopped[0].plan)
    # the next stage had started before the stop (from the fit through the stage before)
    assert any(t.data_size > stop_at for d in seen for t in d.plan)
    events = design_events(seen[0].status, final.status, MODELS[-1])
    assert [e.reason for e in events].count("DesignStopped") == 1


def test_no_stop_before_min_data_sizes_nor_on_a_wide_interval() -> None:
    spec = spec_of(
        strategy="adaptive", computeShare=1,
        stopWhen={"betaIntervalWidth": 1e-6, "minDataSizes": 3},
    )  # fmt: skip
    records, final, _ = run(spec, truth_loss(TRUTH))
    assert final.stop_reason == "AllDataSizes"
    assert {r.data_size for r in records.values()} == set(DATA)


def test_the_grid_share_predicts_the_expensive_corner_instead_of_training_it() -> None:
    """A truth whose best model grows into the largest model size: following it would
    spend most of the grid's compute at the two largest data sizes (issue 28)."""
    truth = random_truth(1000, reach_top=True)

    def cost(t: Trial) -> float:
        return truth.cost(t.model_size, t.data_size)

    sizes = {"dataSizes": {"values": DATA_SIZES}, "modelSizes": {"values": MODEL_SIZES}}
    spec = spec_of(strategy="adaptive", spec=sizes)
    assert spec.design.share == 0.4
    records, final, seen = run(spec, truth_loss(truth), cost=cost)
    grid = sum(cost(t) for t in plan_trials("s", spec))
    spent = sum(cost(t) for t in plan_trials("s", spec) if t.name in records)
    assert final.stop_reason == "GridShareSpent"
    assert spent <= 0.4 * grid
    trained = sorted({r.data_size for r in records.values()})
    assert len(trained) >= 5 and DATA_SIZES[-1] not in trained
    # the window of the next data size would have taken it past 40%: it reached the top
    assert final.status.windows[-1].model_sizes[-1] == MODEL_SIZES[-1]
    events = design_events(seen[0].status, final.status, MODEL_SIZES[-1])
    assert any(e.reason == "DesignStopped" and "GridShareSpent" in e.message for e in events)
    # the loss at the largest listed data size is predicted, with an interval
    fitted = [records[t.name] for t in final.plan if t.name in records]
    report = fit_points(points_of(fitted), fit_options(spec))
    largest = [p for p in report.predictions if p.data_size == DATA_SIZES[-1]]
    assert largest and largest[0].interval is not None


def test_a_vague_prediction_does_not_stop_a_study_on_its_share() -> None:
    """Every trial costs the same, so the sixth data size takes the study past 40% of
    the grid; the losses are so noisy that the fit through five cannot predict the sixth
    within SHARE_PREDICTION_WIDTH: it trains on instead of printing a guess."""

    def noisy(t: Trial) -> float:
        wobble = random.Random(t.data_size * 1000 + t.model_size).gauss(0, 0.4)
        return (0.5 + 20.0 / t.data_size**0.3 + 1.0 / t.model_size) * math.exp(wobble)

    spec = spec_of(strategy="adaptive")
    records, final, _ = run(spec, noisy)
    assert final.stop_reason == "AllDataSizes"
    assert {r.data_size for r in records.values()} == set(DATA)
    fifth = next(f for f in final.status.stage_fits if f.data_size == DATA[4])
    assert fifth.largest_relative_width is None or fifth.largest_relative_width > 0.5


def test_the_budget_is_never_exceeded_once_costs_are_known() -> None:
    def cost(t: Trial) -> float:
        return 1e-6 * parameters(t.model_size) * t.data_size

    full = sum(cost(t) for t in plan_trials("s", spec_of()))
    budget_s = 0.2 * full
    spec = spec_of(budget={"gpuHours": budget_s / 3600})
    records, final, _ = run(spec, truth_loss(TRUTH), cost=cost, parallelism=2)
    spent = sum(cost(t) for t in plan_trials("s", spec) if t.name in records)
    assert final.stop_reason == "BudgetSpent"
    assert spent <= budget_s
    assert final.status.device_seconds == pytest.approx(spent, rel=1e-3)
    # the estimate of the full grid from the cost model is close to the truth
    assert final.status.grid_device_seconds == pytest.approx(full, rel=0.05)


def test_cost_model_recovers_how_cost_grows() -> None:
    trials = [Trial(d, m, 0, f"t{d}-{m}") for d in (100, 200, 400) for m in (2, 4, 8)]
    recs = [record(t, 1.0, duration=3e-3 * t.data_size**1.0 * parameters(t.model_size) ** 0.5)
            for t in trials]  # fmt: skip
    sizes = parameter_counts(recs, [2, 4, 8, 16])
    model = CostModel.fitted(recs, 1.0, sizes)
    assert model is not None
    assert model.data_exponent == pytest.approx(1.0, abs=1e-6)
    assert model.size_exponent == pytest.approx(0.5, abs=1e-6)
    assert sizes[16] == pytest.approx(parameters(16))  # extrapolated on the log-log line
    assert CostModel.fitted([], 1.0, sizes) is None


def test_window_and_predicted_index() -> None:
    assert list(window(2.4, 3, 6)) == [1, 2, 3]
    assert list(window(2.6, 3, 6)) == [2, 3, 4]
    assert list(window(-3.0, 3, 6)) == [0, 1, 2]
    assert list(window(9.0, 3, 6)) == [3, 4, 5]
    assert list(window(1.2, 2, 6)) == [1, 2]
    sizes = [float(parameters(m)) for m in MODELS]
    law = StageFit(data_size=1, results=1, size_alpha=parameters(16) / 1000.0, size_beta=1.0)
    assert predicted_index(law, 1000, sizes) == pytest.approx(2.0)
    assert predicted_index(law, 2000, sizes) == pytest.approx(2.5)
    assert predicted_index(StageFit(data_size=1, results=1), 1000, sizes) is None


def test_design_events_say_when_the_window_moves() -> None:
    before = DesignStatus(strategy="adaptive", trials_started=0, grid_trials=36,
                          trials_skipped=36, gpu_seconds=0.0,
                          windows=[StageWindow(data_size=4000, model_sizes=MODELS)])  # fmt: skip
    after = before.model_copy(
        update={"windows": [*before.windows, StageWindow(data_size=8000, model_sizes=[8, 16, 32])]}
    )
    events = design_events(before, after, MODELS[-1])
    assert [e.reason for e in events] == ["WindowMoved"]
    assert "8000" in events[0].message and "[8, 16, 32]" in events[0].message
    assert design_events(after, after, MODELS[-1]) == []


@pytest.mark.parametrize(
    ("design_spec", "fragment"),
    [
        ({"stopWhen": {"betaIntervalWidth": 0.1}}, "stopWhen needs strategy: adaptive"),
        ({"strategy": "adaptive", "stopWhen": {}}, "stopWhen needs one or more of"),
        ({"strategy": "adaptive", "extendModelSizes": True}, "needs maxModelSize"),
        ({"strategy": "adaptive", "extendModelSizes": True, "maxModelSize": 100},
         "maxModelSize must be above the largest model size 128 (got 100)"),
        ({"strategy": "adaptive", "fullGridDataSizes": 9}, "fullGridDataSizes is 9"),
        ({"strategy": "adaptive", "modelSizeWindow": 1}, "modelSizeWindow"),
        ({"strategy": "sometimes"}, "design.strategy"),
        ({"budget": {"gpuHours": 0}}, "design.budget.gpuHours"),
        ({"computeShare": 0.5}, "computeShare needs strategy: adaptive"),
        ({"strategy": "adaptive", "computeShare": 1.5}, "design.computeShare"),
    ],
)  # fmt: skip
def test_bad_designs_are_rejected_naming_the_field(
    design_spec: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(SpecError) as info:
        spec_of(**design_spec)
    assert fragment in str(info.value)


def test_a_fit_made_of_other_results_is_made_again() -> None:
    spec = spec_of(strategy="adaptive")
    records, _, _ = run(spec, truth_loss(TRUTH))
    stale = {DATA[2]: StageFit(data_size=DATA[2], results=3, size_alpha=1.0, size_beta=0.5)}
    again = design("s", spec, records, set(), stale)
    assert again.fit_needed == DATA[2]
    assert len(again.prefix) == 3 * len(MODELS)
    assert again.more
