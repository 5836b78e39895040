"""Pruning rule v2 (issue 38): forecasts calibrated on the study's own finished trials,
and pruning refused for a metric that is not the curves' validation loss. Real curves
through the real rule and the real spec models; no mocks."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from scalingstudy.crd import crd
from scalingstudy.pruning import Competitor, decide, study_calibration
from scalingstudy.pruning.calibration import lower_quantile
from scalingstudy.spec import PRUNING_METRIC, SpecError, parse_study
from scalingstudy.spec.pruning import PruningSpec
from scalingstudy_sdk.curve import Curve, CurvePoint

ON = PruningSpec(enabled=True)
UNCALIBRATED = ON.model_copy(update={"min_calibration_trials": 1000})
BUDGET = 1000
STEPS = list(range(25, BUDGET + 1, 25))  # 40 evaluations: the first rung (0.2) has 8


def annealed(floor: float, seed: int, drop: float = 0.25) -> Callable[[int], float]:
    """A noisy power law whose last fifth falls by ``drop`` of its value (a schedule that
    anneals): no law fitted before 80% of the budget sees that fall."""
    rng = random.Random(seed)
    table = {}
    for s in STEPS:
        y = floor + 0.5 * floor * (1 + s / 50) ** -0.8
        y *= 1 - drop * max(0.0, (s - 0.8 * BUDGET) / (0.2 * BUDGET))
        table[s] = y * (1 + rng.gauss(0.0, 0.002))
    return lambda s: table[s]


def trial(name: str, f: Callable[[int], float], upto: int, *, data: int = 1000,
          lr: float = 0.01, finished: bool = False) -> Competitor:  # fmt: skip
    points = tuple(CurvePoint(step=s, validation_loss=f(s)) for s in STEPS if s <= upto)
    final = f(BUDGET) if finished else None
    return Competitor(name, data, 8, 0, lr, Curve(points, BUDGET), final, not finished)


def history(n: int, drops: tuple[float, float] = (0.25, 0.25)) -> list[Competitor]:
    """``n`` finished trials of other data sizes, annealed by ``drops`` (evenly spread)."""
    low, high = drops
    return [
        trial(
            f"old{k:02d}",
            annealed(0.1 + 0.01 * k, 100 + k, low + (high - low) * k / (n - 1)),
            BUDGET,
            data=10 + k,
            finished=True,
        )
        for k in range(n)
    ]


def test_a_clear_loser_is_stopped_at_the_first_rung_once_the_study_calibrates() -> None:
    # The winner finished; the loser ends 15% higher. Its own curve cannot tell, at 20%
    # of its budget, how far it will still fall; twelve finished trials of the study can.
    winner = trial("winner", annealed(0.2, 1), BUDGET, finished=True)
    loser = trial("loser", annealed(0.23, 2), 200, lr=0.03)
    assert decide([winner, loser, *history(12)], UNCALIBRATED) == []
    (stopped,) = decide([winner, loser, *history(12)], ON)
    assert stopped.trial == "loser" and stopped.step == 200
    assert "13 finished trials' backtests" in stopped.message  # the winner too
    # Too few finished trials (below minCalibrationTrials): the conservative rule.
    assert decide([winner, loser, *history(ON.min_calibration_trials - 2)], ON) == []


def test_an_annealed_winner_is_kept_where_its_raw_forecast_loses() -> None:
    # The finished competitor's final is 25% below the law of its curve before the
    # anneal; the running trial's law ends 10% lower than the competitor's, so it wins,
    # yet its forecast at half its budget (no anneal seen yet) is above the competitor's
    # final. The calibration carries the study's anneal into its bound.
    competitor = trial("competitor", annealed(0.2, 1), BUDGET, finished=True)
    runner = trial("runner", annealed(0.18, 3), 500, lr=0.03)
    assert runner.curve.points[-1].validation_loss > competitor.final  # type: ignore[operator]
    for settings in (ON, ON.model_copy(update={"confidence": 0.9})):
        assert decide([competitor, runner, *history(30)], settings) == []


def test_two_running_trials_are_compared_by_one_bound_on_their_difference() -> None:
    # The study's trials fell by 15% to 35% after their rungs. Two running trials whose
    # forecasts differ by a ratio of 1.35 (log 0.30): the bounds of each, added, span
    # more than log(0.85 / 0.65) = 0.27 and cannot part them; the bound on the
    # difference of two errors is 0.27 at 12 trials' 132 pairs, and does.
    spread = history(12, drops=(0.15, 0.35))
    good = trial("good", annealed(0.2, 1), 300)
    bad = trial("bad", annealed(0.27, 2), 300, lr=0.03)
    calibration = study_calibration(spread, ON)
    low, high = calibration.bounds(0.3, ON.confidence) or (math.nan, math.nan)
    difference = calibration.difference(0.3, 0.3, ON.confidence) or math.nan
    assert high - low > math.log(1.35) > -difference
    (stopped,) = decide([good, bad, *spread], ON)
    assert stopped.trial == "bad" and "difference of two forecasts' errors" in stopped.message
    assert decide([good, trial("close", annealed(0.22, 2), 300), *spread], ON) == []


def test_the_calibration_corrects_the_forecasts_bias() -> None:
    """Every finished trial fell 25% after its rungs: the errors say so."""
    calibration = study_calibration(history(12), ON)
    low, high = calibration.bounds(0.5, ON.confidence) or (math.nan, math.nan)
    assert low < math.log(0.75) < high < 0  # the whole interval is below the raw forecast
    assert calibration.trials(0.5) == 12 and calibration.trials(0.9) == 12


def test_a_decision_does_not_depend_on_the_order_of_the_competitors() -> None:
    winner = trial("winner", annealed(0.2, 1), BUDGET, finished=True)
    table = [winner, trial("loser", annealed(0.23, 2), 200, lr=0.03), *history(12)]
    first = decide(table, ON)
    for seed in range(5):
        random.Random(seed).shuffle(table)
        assert decide(table, ON) == first


def test_the_order_statistic_and_its_small_sample_tail() -> None:
    errors = [float(k) for k in range(199)]
    assert lower_quantile(errors, 0.99) == 1.0  # rank 0.01 x 200 = 2: the 2nd smallest
    few = [0.0, 1.0, 2.0, 3.0, 4.0]
    tail = lower_quantile(few, 0.99)  # past the sample: below its smallest, and wider
    assert tail < -1.0 and lower_quantile(few, 0.999) < tail  # with more confidence


# ---------------------------------------------------------------- like with like
STUDY: dict[str, Any] = {
    "apiVersion": "scalingstudy.io/v1alpha1",
    "kind": "ScalingStudy",
    "metadata": {"name": "like"},
    "spec": {
        "task": {"name": "teacher-student"},
        "dataSizes": {"values": [100, 200, 400]},
        "modelSizes": {"values": [4, 16]},
        "learningRates": {"values": [0.003, 0.01, 0.03]},
    },
}


def _study(metric: str, enabled: bool) -> dict[str, Any]:
    doc = copy.deepcopy(STUDY)
    doc["spec"]["metric"] = {"name": metric}
    doc["spec"]["design"] = {"pruning": {"enabled": enabled}}
    return doc


def test_pruning_with_another_metric_is_refused_with_a_clear_message() -> None:
    with pytest.raises(SpecError) as refused:
        parse_study(_study("error_rate", True))
    (problem,) = refused.value.problems
    assert PRUNING_METRIC in problem and "error_rate" in problem
    parse_study(_study("error_rate", False))  # without pruning: any metric
    parse_study(_study("validation_loss", True))


def test_the_crd_refuses_it_with_the_same_words() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = schema["properties"]["spec"]["x-kubernetes-validations"]
    (rule,) = [r for r in rules if r["message"] == PRUNING_METRIC]
    assert "self.design.pruning.enabled" in rule["rule"]
    assert "self.metric.name == 'validation_loss'" in rule["rule"]


def test_a_large_study_bounds_a_difference_from_a_bounded_number_of_pairs() -> None:
    """1,000 finished trials: the pairs are thinned (not a million sorted a decision),
    and the bound is still the shared anneal's, near zero."""
    calibration = study_calibration(history(12) * 84, ON)  # 1,008 finished backtests
    assert calibration.trials(0.5) == 1008
    difference = calibration.difference(0.5, 0.5, ON.confidence)
    assert difference is not None and -0.05 < difference < 0


def test_min_calibration_trials_is_a_documented_setting_with_a_floor() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    design = schema["properties"]["spec"]["properties"]["design"]
    setting = design["properties"]["pruning"]["properties"]["minCalibrationTrials"]
    assert setting["default"] == 10 and setting["minimum"] == 2 and setting["description"]
    doc = copy.deepcopy(STUDY)
    doc["spec"]["design"] = {"pruning": {"enabled": True, "minCalibrationTrials": 1}}
    with pytest.raises(SpecError, match="minCalibrationTrials"):
        parse_study(doc)
