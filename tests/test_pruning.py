"""The pruning rule (`scalingstudy.pruning.decide`): it stops trials that cannot win their
slot, and never the winner, a trial it cannot judge, or the last competitor. Real curves
replayed step by step through the real rule; no mocks."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from scalingstudy.pruning import Competitor, Prune, decide, forecast
from scalingstudy.spec.pruning import PruningSpec
from scalingstudy_sdk.curve import Curve, CurvePoint

ON = PruningSpec(enabled=True)
BUDGET = 1000
STEPS = list(range(25, BUDGET + 1, 25))  # 40 evaluations


def law(floor: float, height: float, scale: float, b: float) -> Callable[[int], float]:
    return lambda s: floor + height * (1 + s / scale) ** -b


def noisy(f: Callable[[int], float], sigma: float, seed: int) -> Callable[[int], float]:
    rng = random.Random(seed)
    table = {s: f(s) + rng.gauss(0.0, sigma) for s in STEPS}
    return lambda s: table[s]


def trial(
    name: str, f: Callable[[int], float], upto: int, *, lr: float = 0.01, model: int = 8,
    budget: int | None = BUDGET, final: float | None = None,
) -> Competitor:  # fmt: skip
    """A trial of data size 1000, seed 0, evaluated at STEPS up to ``upto``; finished
    (its last evaluation its final) when ``final`` is given."""
    points = tuple(CurvePoint(step=s, validation_loss=f(s)) for s in STEPS if s <= upto)
    return Competitor(
        trial=name, data_size=1000, model_size=model, seed=0, learning_rate=lr,
        curve=Curve(points, budget), final=final, running=final is None,
    )  # fmt: skip


def replay(curves: dict[str, Callable[[int], float]], settings: PruningSpec = ON) -> dict[str, int]:
    """Every trial runs side by side to BUDGET; the step at which each was stopped."""
    stopped: dict[str, int] = {}
    for step in STEPS:
        now = [
            trial(n, f, stopped.get(n, step), lr=0.001 * (i + 1))
            if n not in stopped
            else Competitor(n, 1000, 8, 0, 0.001 * (i + 1), Curve((), BUDGET), None, False)
            for i, (n, f) in enumerate(sorted(curves.items()))
        ]
        for p in decide(now, settings):
            stopped.setdefault(p.trial, step)
    return stopped


def test_a_slow_starter_that_wins_is_kept_and_the_fast_loser_stopped() -> None:
    # A fast starter plateaus at 0.5; a slow starter is far worse until half-way (so a
    # rule that compares current values stops it) and ends at 0.33.
    fast = noisy(law(0.5, 1.0, 10, 1.0), 0.003, 1)
    slow = noisy(law(0.2, 1.5, 150, 1.2), 0.003, 2)
    assert slow(200) > fast(200) + 0.15 and slow(BUDGET) < fast(BUDGET) - 0.1
    stopped = replay({"fast": fast, "slow": slow})
    assert "slow" not in stopped
    assert stopped.get("fast", BUDGET) < BUDGET  # the loser is stopped before its end


def test_a_diverging_trial_is_stopped_at_its_first_rung() -> None:
    good = law(0.3, 1.0, 100, 1.0)

    def diverging(s: int) -> float:
        return math.nan if s >= 100 else good(s) + 0.2

    stopped = replay({"good": good, "diverging": diverging})
    assert stopped == {"diverging": int(ON.rungs[0] * BUDGET)}


@pytest.mark.parametrize("budget, upto", [(None, 800), (BUDGET, 0)])
def test_a_trial_without_progress_or_budget_is_never_stopped(budget: int | None, upto: int) -> None:
    hopeless = trial("hopeless", lambda s: 9.0, upto, budget=budget)
    winner = trial("winner", lambda s: 0.1, BUDGET, final=0.1)
    assert decide([hopeless, winner], ON) == []


def test_never_before_the_first_rung_nor_with_too_few_evaluations() -> None:
    bad, good = (lambda s: 5.0 + 100 / s), (lambda s: 0.1)
    winner = trial("winner", good, BUDGET, final=0.1)
    assert decide([trial("bad", bad, 175), winner], ON) == []  # 7 evaluations, 17.5%
    stopped = decide([trial("bad", bad, 200), winner], ON)  # 8 evaluations, 20%
    assert [p.trial for p in stopped] == ["bad"]
    sparse = ON.model_copy(update={"min_evaluations": 9})
    assert decide([trial("bad", bad, 200), winner], sparse) == []


def test_never_the_last_competitor() -> None:
    bad = lambda s: 5.0 + 100 / s  # noqa: E731
    # Alone in its slot, or beside trials that bound nothing (failed or pruned).
    assert decide([trial("bad", bad, 600)], ON) == []
    gone = Competitor("gone", 1000, 8, 0, 0.1, Curve((), BUDGET), None, False)
    assert decide([trial("bad", bad, 600), gone], ON) == []
    # Two hopeless running trials: one of them is what the other is judged against.
    worse = lambda s: 6.0 + 100 / s  # noqa: E731
    out = decide([trial("bad", bad, 600, lr=0.1), trial("worse", worse, 600, lr=0.3)], ON)
    assert [p.trial for p in out] == ["worse"]
    # A competitor of another data size or seed is no competitor.
    elsewhere = Competitor("d2", 2000, 8, 0, 0.01, Curve((), BUDGET), 0.01, False)
    other_seed = Competitor("s1", 1000, 8, 1, 0.01, Curve((), BUDGET), 0.01, False)
    assert decide([trial("bad", bad, 600), elsewhere, other_seed], ON) == []


def test_a_single_wild_evaluation_does_not_trigger() -> None:
    base = noisy(law(0.3, 1.0, 100, 1.0), 0.002, 3)
    spike = lambda s: base(s) * (10.0 if s == 600 else 1.0)  # noqa: E731
    twin = noisy(law(0.3, 1.0, 100, 1.0), 0.002, 4)
    assert decide([trial("spike", spike, 600, lr=0.1), trial("twin", twin, 600, lr=0.2)], ON) == []


def test_model_sizes_compete_only_when_asked_and_the_best_sizes_neighbours_are_kept() -> None:
    bad = lambda s: 5.0 + 100 / s  # noqa: E731
    winner = trial("winner", lambda s: 0.1, BUDGET, model=64, final=0.1)
    near = trial("near", bad, 600, model=16, lr=0.02)
    far = trial("far", bad, 600, model=4, lr=0.03)
    # 16 is next to the best size (64) in this slot's sizes 4, 16, 64: kept for the
    # model-size law; 4 is not.
    assert [p.trial for p in decide([far, near, winner], ON)] == ["far"]
    rates_only = ON.model_copy(update={"compare_model_sizes": False})
    assert decide([far, near, winner], rates_only) == []
    # A rate of the neighbour size still competes with the other rates of that size.
    near_good = trial("near-good", lambda s: 0.2, BUDGET, model=16, final=0.2)
    assert [p.trial for p in decide([far, near, near_good, winner], ON)] == ["far", "near"]


def test_a_running_competitors_best_so_far_bounds_it_when_the_trainer_reports_its_lowest() -> None:
    # The competitor rose after its best (it overfits): its forecast is wide, but the
    # built-in trainer reports its lowest evaluation, so its final is at most 0.2.
    rising = lambda s: 0.2 + 0.3 * abs(s - 300) / 300  # noqa: E731
    flat = noisy(lambda s: 0.45, 0.002, 5)
    both = [trial("flat", flat, 600, lr=0.1), trial("rising", rising, 600, lr=0.2)]
    assert [p.trial for p in decide(both, ON, final_is_lowest=True)] == ["flat"]
    assert decide(both, ON, final_is_lowest=False) == []


def test_decide_is_deterministic_and_independent_of_order() -> None:
    curves = [
        trial(f"t{i}", noisy(law(0.3 + 0.2 * i, 1.0, 100, 1.0), 0.003, i), 700, lr=0.01 * (i + 1))
        for i in range(5)
    ]
    first = decide(curves, ON)
    assert first and first == decide(curves, ON)
    for seed in range(5):
        shuffled = list(curves)
        random.Random(seed).shuffle(shuffled)
        assert decide(shuffled, ON) == first
    assert [p.trial for p in first] == sorted(p.trial for p in first)
    assert "t0" not in {p.trial for p in first}


def test_the_prune_says_why_and_where() -> None:
    bad = lambda s: 5.0 + 100 / s  # noqa: E731
    out = decide([trial("bad", bad, 610), trial("winner", lambda s: 0.1, BUDGET, final=0.1)], ON)
    assert out == [
        Prune("bad", 600, pytest.approx(5.0 + 100 / 600), out[0].message, "winner")  # type: ignore[arg-type]
    ]
    assert (
        "up to step 600 of 1000" in out[0].message and "winner's final loss 0.1" in out[0].message
    )


def test_disabled_prunes_nothing() -> None:
    bad = lambda s: 5.0 + 100 / s  # noqa: E731
    winner = trial("winner", lambda s: 0.1, BUDGET, final=0.1)
    assert decide([trial("bad", bad, 600), winner], PruningSpec()) == []


@pytest.mark.parametrize("seed", range(6))
def test_the_forecast_interval_holds_the_final_of_a_noisy_power_law(seed: int) -> None:
    rng = random.Random(seed)
    truth = law(
        rng.uniform(0.1, 0.5), rng.uniform(0.5, 2), rng.uniform(20, 300), rng.uniform(0.4, 1.5)
    )
    f = noisy(truth, 0.004, seed)
    seen = [s for s in STEPS if s <= 400]
    fc = forecast(tuple(seen), tuple(f(s) for s in seen), BUDGET)
    assert fc.lower(2.33) <= truth(BUDGET) <= fc.upper(2.33)
    assert fc.sigma < 0.5 * (f(25) - truth(BUDGET))  # informative, not an open interval


def _recorded(trial_name: str) -> tuple[Curve, float]:
    """A trial of the recorded CPU study (benchmarks/data/pruning/curves.csv)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "pruning" / "curves.csv"
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r["trial"] == trial_name]
    points = tuple(CurvePoint(int(r["step"]), None, float(r["validation_loss"])) for r in rows)
    return Curve(points, int(rows[0]["step_budget"])), float(rows[0]["final"])


def test_the_lowest_of_noisy_evaluations_to_come_is_allowed_for() -> None:
    # Recorded: the winner of its slot (lr 0.01, final 0.04550, its lowest evaluation)
    # runs after lr 0.003 finished at 0.04559. Half-way its curve bounces around 0.048:
    # the curve's value at the budget is above 0.04559, but the lowest of the 10
    # evaluations still to come is what the built-in trainer reports, and it is lower.
    curve, final = _recorded("prune-d1600-m64-l0p01-s0")
    done_curve, done = _recorded("prune-d1600-m64-l0p003-s0")
    assert final < done
    half = Curve(tuple(p for p in curve.points if p.step <= 800), curve.step_budget)
    running = Competitor("winner", 1600, 64, 0, 0.01, half, None, True)
    finished = Competitor("done", 1600, 64, 0, 0.003, done_curve, done, False)
    assert decide([running, finished], ON, final_is_lowest=True) == []


def test_a_trial_still_falling_steeply_under_an_annealed_rate_is_kept() -> None:
    # A high learning rate under a cosine schedule: its rate-driven noise floor (0.12)
    # falls with the rate, so half-way it is above the finished low-rate trial (0.36)
    # but ends below it. Its curve is still falling there, so it is not judged by a law
    # that flattens out.
    def annealed(s: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * s / BUDGET))
        return float(0.3 + 0.05 * (1 + s / 20) ** -0.8 + 0.12 * (0.3 + 0.7 * cosine))

    high = noisy(annealed, 0.001, 7)
    assert high(500) > 0.36 + 0.02 and annealed(BUDGET) < 0.36 - 0.02
    done = trial("low", lambda s: 0.36, BUDGET, lr=0.001, final=0.36)
    for upto in STEPS:
        assert decide([trial("high", high, upto, lr=0.03), done], ON) == [], upto
