"""A pruned trial's record, and what the product makes of it: recorded with its curve and
best loss, never retried, not a failure, left out of the fit with a note, priced in the
spend but not in the cost model; the spec's pruning settings through the CRD."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scalingstudy.crd import crd
from scalingstudy.planning.cost import CostModel
from scalingstudy.planning.plan import Plan
from scalingstudy.planning.scheduling import schedule
from scalingstudy.records import CSV_COLUMNS, RECORD_CURVE_POINTS, TrialRecord
from scalingstudy.results import fit_input, planned_records
from scalingstudy.spec import SpecError, parse_spec
from scalingstudy.spec.pruning import PruningSpec
from scalingstudy_sdk.curve import Curve, CurvePoint

ROOT = Path(__file__).resolve().parents[1]
STUDY = "prune"
SPEC = {
    "task": {"name": "teacher-student"},
    "dataSizes": {"values": [100, 200, 400]},
    "modelSizes": {"values": [4, 16]},
    "learningRates": {"values": [0.003, 0.01, 0.03]},
    "design": {"pruning": {"enabled": True, "rungs": [0.25, 0.5], "confidence": 0.95}},
}


def _curve(n: int = 300) -> Curve:
    points = [CurvePoint(step=10 * (i + 1), validation_loss=1.0 / (i + 1)) for i in range(n)]
    points[5] = CurvePoint(step=60, validation_loss=float("nan"))
    return Curve(tuple(points), 6000)


def _records(spec_raw: dict[str, object] = SPEC) -> tuple[Plan, dict[str, TrialRecord]]:
    spec = parse_spec(spec_raw)
    plan = Plan.of(STUDY, spec)
    records: dict[str, TrialRecord] = {}
    for i, t in enumerate(plan):
        if i % 3 == 0:
            records[t.name] = TrialRecord.pruned(t, 120, "cannot win its slot", _curve(), 3.0)
        else:
            records[t.name] = TrialRecord(
                trial=t.name, data_size=t.data_size, model_size=t.model_size, seed=t.seed,
                learning_rate=t.learning_rate, status="Succeeded",
                loss=0.1 * t.data_size**-0.3 * (1 + i / 100), duration_seconds=10.0,
            )  # fmt: skip
    return plan, records


def test_a_pruned_record_keeps_its_best_loss_step_reason_and_a_compact_curve() -> None:
    plan, records = _records()
    rec = records[next(iter(plan)).name]
    assert (rec.status, rec.loss, rec.reason) == ("Pruned", None, "Pruned")
    assert rec.best_loss == pytest.approx(1.0 / 300) and rec.pruned_at_step == 120
    assert rec.message == "cannot win its slot" and rec.duration_seconds == 3.0
    assert rec.curve is not None and 3 <= len(rec.curve) <= RECORD_CURVE_POINTS
    assert rec.curve[0] == [10, 1.0] and rec.curve[-1] == [3000, pytest.approx(1.0 / 300)]
    assert all(loss == loss for _, loss in rec.curve)  # no NaN: status is JSON
    again = TrialRecord.from_json(rec.to_json())
    assert again == rec and rec.to_json()["prunedAtStep"] == 120
    # results.csv lists succeeded trials: no column that only a pruned trial fills
    assert not {"curve", "best_loss", "pruned_at_step", "pruned_against"} & set(CSV_COLUMNS)


def test_a_pruned_trial_is_never_retried_and_is_not_a_failure() -> None:
    plan, records = _records()
    pruned = {n for n, r in records.items() if r.status == "Pruned"}
    out = schedule(plan, records, active=(), parallelism=4, max_failed=0)
    assert out.failed_reason is None and out.finished  # every trial recorded: done, not failed
    assert not ({t.name for t in out.start} & pruned)
    # With room to start and trials still waiting, the pruned ones stay out of the start.
    first = next(iter(plan)).name
    partial = {first: records[first]}
    started = schedule(plan, partial, active=(), parallelism=100, max_failed=0)
    assert first not in {t.name for t in started.start} and started.failed_reason is None


def test_the_fit_leaves_pruned_trials_out_and_says_how_many() -> None:
    spec = parse_spec(SPEC)
    _, records = _records()
    kept = planned_records(STUDY, spec, records.values())
    points, options = fit_input(kept, spec)
    pruned = sum(r.status == "Pruned" for r in kept)
    assert pruned == 6
    assert len(points) <= sum(r.status == "Succeeded" for r in kept)
    assert {p.loss for p in points} <= {r.loss for r in kept if r.status == "Succeeded"}
    notes = [n for n in options.notes if "pruned" in n]
    assert notes and notes[0].startswith("6 trials pruned (") and "left out of the fit" in notes[0]


def test_the_cost_model_prices_whole_trials_only() -> None:
    _, records = _records()
    succeeded = [r for r in records.values() if r.status == "Succeeded"]
    with_pruned = CostModel.fitted(records.values(), 1.0, {})
    without = CostModel.fitted(succeeded, 1.0, {})
    assert with_pruned == without


def test_the_pruning_settings_round_trip_through_the_crd() -> None:
    spec = parse_spec(SPEC)
    assert spec.design.pruning == PruningSpec(enabled=True, rungs=[0.25, 0.5], confidence=0.95)
    assert parse_spec(spec.model_dump(by_alias=True, exclude_none=True)) == spec
    assert (
        parse_spec({k: v for k, v in SPEC.items() if k != "design"}).design.pruning.enabled is False
    )
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    pruning = schema["properties"]["spec"]["properties"]["design"]["properties"]["pruning"]
    assert set(pruning["properties"]) == {
        "enabled", "rungs", "confidence", "minEvaluations", "compareModelSizes",
        "minCalibrationTrials",
    }  # fmt: skip
    assert all(p.get("description") for p in pruning["properties"].values())
    committed = yaml.safe_load((ROOT / "crds" / "scalingstudies.yaml").read_text())
    assert committed["spec"]["versions"][0]["schema"]["openAPIV3Schema"] == schema
    results = schema["properties"]["status"]["properties"]["results"]["items"]
    assert "Pruned" in results["properties"]["status"]["enum"]


@pytest.mark.parametrize(
    "pruning, words",
    [({"rungs": [0.5, 0.3]}, "increase strictly"), ({"rungs": [1.0]}, "rungs"),
     ({"confidence": 0.3}, "confidence"), ({"minEvaluations": 2}, "minEvaluations")],
)  # fmt: skip
def test_bad_pruning_settings_are_refused_naming_the_field(
    pruning: dict[str, object], words: str
) -> None:
    with pytest.raises(SpecError, match=words):
        parse_spec({**SPEC, "design": {"pruning": pruning}})
