"""A pruning decision stands only while the competitor it was made against does: if that
trial fails, or a spec edit drops its value, the pruned trial may be the slot's winner
after all and is trained again (review of issue 38)."""

from __future__ import annotations

import math

from scalingstudy.planning.plan import Plan
from scalingstudy.planning.scheduling import lapsed_prunes, schedule
from scalingstudy.pruning import Competitor, decide
from scalingstudy.records import TrialRecord
from scalingstudy.spec import parse_spec
from scalingstudy.spec.pruning import PruningSpec
from scalingstudy_sdk.curve import Curve, CurvePoint

SPEC = {
    "task": {"name": "teacher-student"},
    "dataSizes": {"values": [100, 200, 400]},
    "modelSizes": {"values": [4]},
    "learningRates": {"values": [0.01, 0.1]},
    "design": {"pruning": {"enabled": True}},
}


def _plan(rates: list[float]) -> Plan:
    return Plan.of("s", parse_spec({**SPEC, "learningRates": {"values": rates}}))


def _by_rate(plan: Plan, data_size: int) -> dict[float | None, str]:
    return {t.learning_rate: t.name for t in plan if t.data_size == data_size}


def _pruned(plan: Plan, name: str, against: str | None) -> TrialRecord:
    trial = next(t for t in plan if t.name == name)
    curve = Curve((CurvePoint(10, validation_loss=2.0), CurvePoint(20, validation_loss=1.9)), 100)
    return TrialRecord.pruned(trial, 20, "cannot win its slot", curve, 1.0, against=against)


def _done(plan: Plan, name: str, status: str) -> TrialRecord:
    t = next(t for t in plan if t.name == name)
    loss = {"loss": 0.5} if status == "Succeeded" else {"reason": "Error"}
    return TrialRecord(
        trial=name,
        data_size=t.data_size,
        model_size=t.model_size,
        seed=t.seed,
        learning_rate=t.learning_rate,
        status=status,
        **loss,
    )  # type: ignore[arg-type]


def test_a_decision_stands_while_its_rival_runs_succeeds_or_was_pruned_itself() -> None:
    plan = _plan([0.01, 0.1])
    names = _by_rate(plan, 100)
    pruned = _pruned(plan, names[0.1], against=names[0.01])
    assert lapsed_prunes(plan, {pruned.trial: pruned}) == []  # rival still running
    rival = _done(plan, names[0.01], "Succeeded")
    assert lapsed_prunes(plan, {pruned.trial: pruned, rival.trial: rival}) == []
    beaten = _pruned(plan, names[0.01], against="a third trial that beats both")
    assert names[0.1] not in lapsed_prunes(plan, {pruned.trial: pruned, beaten.trial: beaten})


def test_a_rival_that_failed_lapses_the_decision_and_the_trial_is_trained_again() -> None:
    plan = _plan([0.01, 0.1])
    names = _by_rate(plan, 100)
    pruned = _pruned(plan, names[0.1], against=names[0.01])
    rival = _done(plan, names[0.01], "Failed")
    records = {pruned.trial: pruned, rival.trial: rival}
    assert lapsed_prunes(plan, records) == [names[0.1]]
    kept = {n: r for n, r in records.items() if n not in lapsed_prunes(plan, records)}
    started = {t.name for t in schedule(plan, kept, (), 10, 5).start}
    assert names[0.1] in started and names[0.01] not in started


def test_a_spec_edit_that_drops_the_rival_lapses_the_decision() -> None:
    before = _plan([0.01, 0.1])
    names = _by_rate(before, 100)
    pruned = _pruned(before, names[0.1], against=names[0.01])
    rival = _done(before, names[0.01], "Succeeded")
    records = {pruned.trial: pruned, rival.trial: rival}
    after = _plan([0.001, 0.1])  # 0.01 removed: the trial 0.1 lost to is no longer planned
    assert lapsed_prunes(after, records) == [names[0.1]]
    assert lapsed_prunes(before, records) == []


def test_a_decision_without_a_named_rival_stands() -> None:
    plan = _plan([0.01, 0.1])
    names = _by_rate(plan, 100)
    pruned = _pruned(plan, names[0.1], against=None)
    assert lapsed_prunes(plan, {pruned.trial: pruned}) == []


def _running(name: str, losses: list[float], lr: float) -> Competitor:
    points = tuple(CurvePoint(10 * (i + 1), validation_loss=v) for i, v in enumerate(losses))
    return Competitor(name, 100, 4, 0, lr, Curve(points, 100), None, True)


def test_a_diverged_trial_that_already_beats_its_rivals_is_not_stopped() -> None:
    """It reached 0.949 before one NaN; the rival has shown 2.49 at best: its trainer
    reports its lowest finite evaluation, so it is the slot's winner, not a loser."""
    on = PruningSpec(enabled=True)
    winner = _running("w", [2.0, 1.5, 1.2, 0.949, math.nan], 0.1)
    rival = _running("r", [3.0, 2.8, 2.6, 2.5, 2.49], 0.01)
    assert decide([winner, rival], on) == []
    loser = _running("w", [3.5, 3.2, 3.1, 3.0, math.nan], 0.1)
    [stopped] = decide([loser, rival], on)
    assert (stopped.trial, stopped.against) == ("w", "r")


def test_a_lapse_in_one_seed_trains_every_pruned_seed_of_the_arm_again() -> None:
    """Seeds of one arm were pruned together on their mean: the failure of the rival's
    seed 1 lapses the pruned arm's seed 0 too (else its mean would rest on seed 1)."""
    plan = Plan.of("s", parse_spec({**SPEC, "seeds": 2}))
    name = {(t.data_size, t.learning_rate, t.seed): t.name for t in plan}
    pruned = [_pruned(plan, name[(100, 0.1, s)], against=name[(100, 0.01, s)]) for s in (0, 1)]
    other = _pruned(plan, name[(200, 0.1, 1)], against=name[(200, 0.01, 1)])  # another arm
    records = {r.trial: r for r in [*pruned, other]}
    assert lapsed_prunes(plan, records) == []
    failed = _done(plan, name[(100, 0.01, 1)], "Failed")
    records[failed.trial] = failed
    assert lapsed_prunes(plan, records) == sorted(r.trial for r in pruned)
