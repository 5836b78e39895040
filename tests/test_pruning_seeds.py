"""Pruning across seeds (`scalingstudy.pruning.arms`): the product picks a cell's learning
rate by the mean over seeds, so the unit that competes is an arm, one (data size, model
size, learning rate) over every planned seed. Real curves through the real rule; no
mocks."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from types import ModuleType

from scalingstudy.pruning import Competitor, decide
from scalingstudy.pruning.arms import mean
from scalingstudy_sdk.curve import Curve, CurvePoint
from tests.test_pruning import BUDGET, ON, STEPS, law, noisy

RATES_ONLY = ON.model_copy(update={"compare_model_sizes": False})


def trial(
    name: str, f: Callable[[int], float], upto: int, *, lr: float, seed: int,
    model: int = 8, final: float | None = None,
) -> Competitor:  # fmt: skip
    """A trial of data size 1000 evaluated at STEPS up to ``upto``; finished with
    ``final`` when given."""
    points = tuple(CurvePoint(step=s, validation_loss=f(s)) for s in STEPS if s <= upto)
    return Competitor(name, 1000, model, seed, lr, Curve(points, BUDGET), final, final is None)


def settled(level: float, seed: int) -> Callable[[int], float]:
    """A curve that has nearly settled at ``level`` (its forecast interval is narrow)."""
    return noisy(law(level, 0.05, 100, 1.0), 0.0005, seed)


def done(name: str, loss: float, *, lr: float, seed: int, model: int = 8) -> Competitor:
    return trial(name, lambda s: loss, BUDGET, lr=lr, seed=seed, model=model, final=loss)


def test_a_rate_that_loses_one_seed_but_is_close_on_the_mean_is_kept() -> None:
    # Rate 0.03 wins seed 0 (0.334 against 0.40) and loses seed 1 (0.364 against 0.30):
    # the per-seed rule stops it in seed 1, leaving its mean resting on seed 0 alone.
    # On the mean (0.349 against 0.346) it is too close to call: nothing is stopped.
    table = [
        done("good-s0", 0.40, lr=0.01, seed=0),
        done("good-s1", 0.30, lr=0.01, seed=1),
        trial("r-s0", settled(0.33, 2), 600, lr=0.03, seed=0),
        trial("r-s1", settled(0.36, 3), 600, lr=0.03, seed=1),
    ]
    assert [p.trial for p in decide(table, ON, across_seeds=False)] == ["r-s1"]
    assert decide(table, ON) == []


def test_a_rate_that_loses_on_the_mean_is_stopped_in_every_seed_at_once() -> None:
    table = [
        done("good-s0", 0.30, lr=0.01, seed=0),
        done("good-s1", 0.31, lr=0.01, seed=1),
        trial("r-s0", settled(0.36, 2), 600, lr=0.03, seed=0),
        trial("r-s1", settled(0.37, 3), 600, lr=0.03, seed=1),
    ]
    out = decide(table, ON)
    assert [p.trial for p in out] == ["r-s0", "r-s1"]
    assert [p.against for p in out] == ["good-s0", "good-s1"]  # the rival arm's same seed
    for p in out:
        assert "across seeds" in p.message and "learning rate 0.03" in p.message
        assert "learning rate 0.01" in p.message and "2 seeds" in p.message
        assert f"{mean([0.30, 0.31], True):.4g}" in p.message  # the rival arm's mean
        assert p.step == 600


def test_an_arm_with_a_seed_not_started_is_not_judged() -> None:
    hopeless = lambda s: 5.0 + 100 / s  # noqa: E731
    winners = [done("good-s0", 0.30, lr=0.01, seed=0), done("good-s1", 0.31, lr=0.01, seed=1)]
    r0 = trial("r-s0", hopeless, 600, lr=0.03, seed=0)
    # Seed 1 of rate 0.03 is queued (not in the table): its arm has no mean yet.
    assert decide([*winners, r0], ON) == []
    assert [p.trial for p in decide([*winners, r0], ON, across_seeds=False)] == ["r-s0"]
    # The planned seeds can be named: a study of seeds 0 and 1 whose seed-1 trials have
    # not started judges nothing (inferred from the table alone, it would be one seed).
    alone = [winners[0], r0]
    assert [p.trial for p in decide(alone, ON)] == ["r-s0"]
    assert decide(alone, ON, seeds=[0, 1]) == []
    # Once it runs past its first rung, the arm is judged and both seeds are stopped.
    r1 = trial("r-s1", hopeless, 200, lr=0.03, seed=1)
    assert [p.trial for p in decide([*winners, r0, r1], ON)] == ["r-s0", "r-s1"]
    # Before its first rung (or with too few evaluations) it has no bound.
    early = trial("r-s1", hopeless, 150, lr=0.03, seed=1)
    assert decide([*winners, r0, early], ON) == []


def test_a_rival_arm_counts_only_when_every_seed_bounds_it() -> None:
    hopeless = lambda s: 5.0 + 100 / s  # noqa: E731
    r = [trial(f"r-s{k}", hopeless, 600, lr=0.03, seed=k) for k in (0, 1)]
    failed = Competitor("good-s1", 1000, 8, 1, 0.01, Curve((), BUDGET), None, False)
    assert decide([done("good-s0", 0.3, lr=0.01, seed=0), failed, *r], ON) == []


def test_a_pruned_arms_finished_seeds_must_lose_on_their_own() -> None:
    # Rate 0.03's seed 0 finished at 0.28, below the rival's mean: stopping its seed 1
    # would leave the product's mean of rate 0.03 resting on seed 0 and choosing it.
    hopeless = lambda s: 5.0 + 100 / s  # noqa: E731
    table = [
        done("good-s0", 0.30, lr=0.01, seed=0),
        done("good-s1", 0.31, lr=0.01, seed=1),
        done("r-s0", 0.28, lr=0.03, seed=0),
        trial("r-s1", hopeless, 600, lr=0.03, seed=1),
    ]
    assert decide(table, ON) == []
    table[2] = done("r-s0", 0.35, lr=0.03, seed=0)
    assert [p.trial for p in decide(table, ON)] == ["r-s1"]


def test_never_the_last_arm_nor_the_arm_it_loses_to() -> None:
    bad = lambda s: 5.0 + 100 / s  # noqa: E731
    worse = lambda s: 6.0 + 100 / s  # noqa: E731
    table = [trial(f"bad-s{k}", bad, 600, lr=0.1, seed=k) for k in (0, 1)]
    table += [trial(f"worse-s{k}", worse, 600, lr=0.3, seed=k) for k in (0, 1)]
    out = decide(table, ON)
    assert [p.trial for p in out] == ["worse-s0", "worse-s1"]
    assert {p.against for p in out} == {"bad-s0", "bad-s1"}
    assert decide(table[:2], ON) == []  # alone in its cell


def test_model_sizes_compete_as_arms_and_the_best_sizes_neighbours_are_kept() -> None:
    bad = lambda s: 5.0 + 100 / s  # noqa: E731
    table = [done(f"win-s{k}", 0.1, lr=None, seed=k, model=64) for k in (0, 1)]  # no sweep
    table += [trial(f"near-s{k}", bad, 600, lr=None, seed=k, model=16) for k in (0, 1)]
    table += [trial(f"far-s{k}", bad, 600, lr=None, seed=k, model=4) for k in (0, 1)]
    assert [p.trial for p in decide(table, ON)] == ["far-s0", "far-s1"]
    assert "mean loss" in decide(table, ON)[0].message  # model sizes: the mean loss
    assert decide(table, RATES_ONLY) == []


def test_a_diverged_seed_counts_its_lowest_evaluation_where_the_trainer_reports_it() -> None:
    good = settled(0.30, 1)

    def diverging(s: int) -> float:
        return math.nan if s >= 400 else good(s) + 0.3

    table = [
        done("good-s0", 0.30, lr=0.01, seed=0),
        done("good-s1", 0.31, lr=0.01, seed=1),
        trial("r-s0", diverging, 600, lr=0.03, seed=0),
        trial("r-s1", settled(0.36, 3), 600, lr=0.03, seed=1),
    ]
    lowest = decide(table, ON, final_is_lowest=True)
    assert [p.trial for p in lowest] == ["r-s0", "r-s1"]
    # Another trainer's diverged run fails and the product's mean leaves it out: the arm
    # is judged on its other seed, whose bound (~0.36) is above the rival's mean too.
    assert [p.trial for p in decide(table, ON)] == ["r-s0", "r-s1"]
    # ... but not where that other seed may still win; the diverged seed runs on (it will
    # fail; stopped, it would leave its arm without a bound, never judged again).
    table[3] = trial("r-s1", settled(0.29, 3), 600, lr=0.03, seed=1)
    assert decide(table, ON) == []


def test_one_seed_studies_are_judged_as_before() -> None:
    # The fixture of test_pruning's determinism test: five rates of one seed.
    curves = [
        trial(f"t{i}", noisy(law(0.3 + 0.2 * i, 1.0, 100, 1.0), 0.003, i), 700,
              lr=0.01 * (i + 1), seed=0)
        for i in range(5)
    ]  # fmt: skip
    before = decide(curves, ON, across_seeds=False)
    assert before and decide(curves, ON) == before == decide(curves, ON, seeds=[0])
    # The same curves as two seeds (each trial twice): the arms' means are the seeds'
    # own bounds, so the same rates are stopped, in both seeds.
    twice = curves + [
        Competitor(f"{c.trial}-s1", c.data_size, c.model_size, 1, c.learning_rate, c.curve,
                   c.final, c.running)
        for c in curves
    ]  # fmt: skip
    across = decide(twice, ON)
    assert [p.trial for p in across] == sorted(
        [p.trial for p in before] + [f"{p.trial}-s1" for p in before]
    )


def test_the_decision_does_not_depend_on_the_order_of_the_competitors() -> None:
    table = [
        trial(f"t{i}-s{k}", noisy(law(0.3 + 0.2 * i, 1.0, 100, 1.0), 0.003, 10 * i + k), 700,
              lr=0.01 * (i + 1), seed=k)
        for i in range(4)
        for k in range(3)
    ]  # fmt: skip
    first = decide(table, ON)
    assert first and {p.trial[:2] for p in first} >= {"t3"}
    assert all(p.trial[:2] != "t0" for p in first)
    for seed in range(5):
        random.Random(seed).shuffle(table)
        assert decide(table, ON) == first


# ---------------------------------------------------------------- the benchmark's seeds
def test_the_benchmark_groups_replicate_studies_as_seeds_and_picks_by_the_mean(
    bench: ModuleType,
) -> None:
    family = bench.rate_family("t", "constant", 5)
    seeded = bench.seeded(family, 2)  # replicates 0..3 as 2 studies of 2 seeds; 4 dropped
    assert {(r.study, r.seed) for r in seeded.runs} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert len(seeded.runs) == len(family.runs) * 4 // 5
    truth = bench.picks(seeded, ())
    cell = (0, 1000, 1)
    finals = {
        r.learning_rate: [
            x.final for x in seeded.runs if bench._cell(x, seeded) == (cell, r.learning_rate)
        ]
        for r in seeded.runs
        if bench._cell(r, seeded)[0] == cell
    }
    assert truth[cell] == min(finals, key=lambda lr: mean(finals[lr], True))
    # A pick rests on the succeeded seeds: stopping the chosen rate everywhere moves it.
    chosen = [r.trial for r in seeded.runs if bench._cell(r, seeded) == (cell, truth[cell])]
    assert bench.picks(seeded, chosen)[cell] != truth[cell]
