"""Pruning with a prior calibration (other curves' forecast errors pooled in before a
study has ``minCalibrationTrials`` of its own), and the bounds benchmarks/pruning.py
prints with ``--breakdown`` (docs/pruning.md, "How far from the goals"). Real curves
through the real rule; no mocks."""

from __future__ import annotations

import math
import random
from types import ModuleType

import pytest

from scalingstudy.pruning import Competitor, Prune, decide, study_calibration
from scalingstudy.pruning.calibration import backtest, calibrate
from scalingstudy_sdk.curve import CurvePoint
from tests.test_pruning_v2 import BUDGET, ON, annealed, history, trial


def prior_of(n: int, drops: tuple[float, float] = (0.25, 0.25)) -> list[dict[float, float]]:
    """The errors of ``n`` finished curves of another study (annealed like these)."""
    return [
        dict(backtest(c.curve, c.final or 0.0, tuple(ON.rungs), ON.min_evaluations))
        for c in history(n, drops)
    ]


def test_a_prior_bounds_forecasts_before_the_study_has_its_own() -> None:
    # Two finished trials of the study: too few to calibrate (minCalibrationTrials 10).
    # Twelve curves of an earlier study of the same task bound the forecast at 20%.
    winner = trial("winner", annealed(0.2, 1), BUDGET, finished=True)
    loser = trial("loser", annealed(0.23, 2), 200, lr=0.03)
    table = [winner, loser, *history(2)]
    assert decide(table, ON) == []
    (stopped,) = decide(table, ON, prior=prior_of(12))
    assert stopped.trial == "loser" and stopped.step == 200
    assert "3 finished trials' and 12 prior curves' backtests" in stopped.message


def test_the_studys_own_errors_replace_the_prior_once_it_has_enough() -> None:
    own = history(ON.min_calibration_trials)
    wild = [dict.fromkeys(ON.rungs, e) for e in (-3.0, -2.5, -2.0, -1.0, 1.0, 2.0, 2.5, 3.0)]
    with_prior = study_calibration(own, ON, wild)
    without = study_calibration(own, ON)
    for rung in ON.rungs:
        assert with_prior.bounds(rung, 0.99) == without.bounds(rung, 0.99)
        assert with_prior.difference(rung, rung, 0.99) == without.difference(rung, rung, 0.99)
        assert with_prior.describe(rung) == f"{len(own)} finished trials' backtests"
    # Below the minimum the prior's errors are pooled in (3 + 8), and widen the bounds.
    few = study_calibration(own[:3], ON, wild)
    low, high = few.bounds(0.5, 0.99) or (math.nan, math.nan)
    assert low <= -3.0 and high >= 3.0 and few.trials(0.5) == 3
    assert (few.difference(0.5, 0.5, 0.99) or 0.0) <= -4.0


def test_a_rung_without_enough_errors_even_with_the_prior_is_not_calibrated() -> None:
    calibration = calibrate([], ON.rungs, ON.min_evaluations, 10, prior_of(4))
    assert all(calibration.bounds(r, 0.99) is None for r in ON.rungs)
    assert calibration.difference(0.5, 0.5, 0.99) is None


def test_a_decision_with_a_prior_does_not_depend_on_any_order() -> None:
    winner = trial("winner", annealed(0.2, 1), BUDGET, finished=True)
    table = [winner, trial("loser", annealed(0.23, 2), 200, lr=0.03), *history(3)]
    prior = prior_of(12)
    first = decide(table, ON, prior=prior)
    assert first
    for seed in range(4):
        rng = random.Random(seed)
        rng.shuffle(table)
        rng.shuffle(prior)
        assert decide(table, ON, prior=prior) == first


# ---------------------------------------------------------------- the benchmark's bounds
def test_the_oracle_of_a_three_rate_sweep_is_one_whole_trial_and_two_first_rungs(
    bench: ModuleType,
) -> None:
    family = bench.rate_family("t", "constant", 1)
    for first in (0.1, 0.2):
        assert bench.oracle(family, first, False) == pytest.approx((1 + 2 * first) / 3)


def test_where_the_compute_goes_adds_up_to_what_the_rule_spent(bench: ModuleType) -> None:
    family = bench.rate_family("t", "constant", 1)
    settings = ON.model_copy(update={"compare_model_sizes": False})
    parts = bench.breakdown(family, settings, 2)
    spent = bench.score(family, bench.product_rule(settings, False), 2, {0: None}).compute
    assert sum(parts.values()) == pytest.approx(spent)
    assert parts["winners"] == pytest.approx(1 / 3) and parts["untagged"] == 0.0
    assert parts["losers < first rung"] == pytest.approx(2 * 0.2 / 3)
    # No rule that judges forecasts does better than the forecast-limited bound, nor that
    # better than the oracle.
    bound = bench.forecast_limited(family, settings.rungs, settings.confidence)
    assert bench.oracle(family, 0.2, False) <= bound <= spent + 1e-9


def test_the_replay_trains_a_trial_on_when_the_rival_it_was_stopped_against_fails(
    bench: ModuleType,
) -> None:
    # As the runner does (scheduling.lapsed_prunes): "good" is stopped against "bad" at
    # its fifth evaluation; "bad" then diverges (no final), so "good" goes on from there.
    steps = range(100, 1001, 100)

    def run(name: str, final: float | None) -> object:
        points = tuple(CurvePoint(step=s, validation_loss=1.0 + 1 / s) for s in steps)
        return bench.Run(0, name, 1, 1, 0, 0.01, points, 1000, final, 1.0)

    good, bad = run("good", 1.0), run("bad", None)

    def rule(table: list[Competitor], _step: int) -> list[Prune]:
        return [
            Prune("good", c.curve.last_step or 0, None, "test", "bad")
            for c in table
            if c.trial == "good" and c.running and c.curve.last_step == 500
        ]

    assert bench.replay([good, bad], rule, 2) == {}
    spent = bench.score(bench.Family("f", "rates", (good, bad), 0.0, False, False), rule, 2,
                        {0: None})  # fmt: skip
    assert spent.compute == pytest.approx(1.0) and spent.kept == 1
    # A rival that finishes keeps the decision.
    assert bench.replay([good, run("bad", 1.1)], rule, 2) == {"good": 500}
