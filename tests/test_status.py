"""One typed path from a trial's result to the status: the status the pass builds is
exactly what the CRD's schema keeps (nothing pruned, nothing rejected), it parses back
into the same models, and a status that does not parse loses only the broken part."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scalingstudy.contract import ResultFields
from scalingstudy.crd import crd
from scalingstudy.fitting import FitOptions, Point, fit_points
from scalingstudy.fitting.report import FitReport
from scalingstudy.status import CSV_COLUMNS, ScalingStudyStatus, TrialRecord
from tests.status_samples import full_status

Schema = dict[str, Any]
TYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "integer": (int,),
    "string": (str,),
    "boolean": (bool,),
}


def status_schema() -> Schema:
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(root["properties"]["status"])


def schema_problems(value: Any, schema: Schema, path: str = "status") -> list[str]:
    """What the API server would prune or reject: unknown keys, missing required keys,
    nulls where none are allowed, values of the wrong type or outside the enum."""
    if value is None:
        return [] if schema.get("nullable") else [f"{path}: null"]
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get(
        "x-kubernetes-int-or-string"
    ):
        return []
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        out = [f"{path}.{key}: required" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            sub = props.get(key, extra)
            if sub is None:
                out.append(f"{path}.{key}: pruned (not in the schema)")
            else:
                out += schema_problems(item, sub, f"{path}.{key}")
        return out
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: not an array"]
        return [
            p
            for i, item in enumerate(value)
            for p in schema_problems(item, schema["items"], f"{path}[{i}]")
        ]
    wanted = TYPES[str(kind)]
    if isinstance(value, bool) != (kind == "boolean") or not isinstance(value, wanted):
        return [f"{path}: {value!r} is not a {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} not in {schema['enum']}"]
    return []


@pytest.fixture(scope="module")
def written() -> dict[str, Any]:
    return full_status().to_json()


def test_the_sample_status_has_every_part(written: dict[str, Any]) -> None:
    """Guards the tests below against checking an emptier status than a real one."""
    fit = written["fit"]
    assert {"learningCurve", "modelSize", "predictions", "extrapolation", "dataForTarget",
            "joint", "warnings"} <= set(fit)  # fmt: skip
    assert fit["predictions"][0]["form"] and fit["extrapolation"]["forms"]
    assert fit["modelSize"]["estimates"] and fit["learningCurve"]["band"]
    assert {r["status"] for r in written["results"]} == {"Succeeded", "Failed"}
    assert {"trainLoss", "samplesSeen", "durationSeconds", "source"} <= set(written["results"][1])


def test_a_real_pass_status_survives_structural_pruning(written: dict[str, Any]) -> None:
    assert schema_problems(written, status_schema()) == []


def test_the_schema_check_notices_what_would_be_pruned(written: dict[str, Any]) -> None:
    broken = {**written, "fit": {**written["fit"], "typo": 1}}
    broken["results"] = [{**written["results"][0], "lossy": 2.0}, *written["results"][1:]]
    problems = schema_problems(broken, status_schema())
    assert problems == ["status.results[0].lossy: pruned (not in the schema)",
                        "status.fit.typo: pruned (not in the schema)"]  # fmt: skip


def test_status_parses_back_into_the_same_models(written: dict[str, Any]) -> None:
    assert ScalingStudyStatus.model_validate(written).to_json() == written


def test_a_result_field_reaches_the_record_the_csv_and_the_status_schema() -> None:
    row_schema = status_schema()["properties"]["results"]["items"]["properties"]
    for name in ResultFields.model_fields:
        assert name in TrialRecord.model_fields and name in CSV_COLUMNS
        assert TrialRecord.model_fields[name].alias in row_schema


def test_lenient_status_drops_only_what_does_not_parse(written: dict[str, Any]) -> None:
    damaged = {
        **written,
        "results": [{"trial": "broken"}, *written["results"]],
        "fit": {"learningCurve": "not an object"},
    }
    with pytest.raises(ValueError):
        ScalingStudyStatus.model_validate(damaged)
    kept = ScalingStudyStatus.lenient(damaged)
    assert [r.to_json() for r in kept.results] == written["results"]
    assert kept.fit is None  # refitted on the next pass
    assert kept.phase == written["phase"] and len(kept.conditions) == 4


@pytest.mark.parametrize("sizes", [3, 12])
def test_fit_report_json_round_trips_exactly(sizes: int) -> None:
    """With and without a backtest (3 sizes: bootstrap only, optional keys absent)."""
    points = [
        Point(float(100 * 2**i), 3.0 * (100 * 2**i) ** -0.3 + 0.01 * (i % 3), 4.0, "0")
        for i in range(sizes)
    ]
    report = fit_points(points, FitOptions(bootstrap=30, predict_at=(1e6,), target_loss=0.2))
    raw = report.to_json()
    assert FitReport.from_json(raw).to_json() == raw
    has_backtest = raw["extrapolation"]["method"] == "rolling-origin backtest"
    assert has_backtest == (sizes == 12)
    assert ("form" in raw["predictions"][0]) == has_backtest
    assert ("distance_ratio" in raw["data_for_target"]) == has_backtest


def test_the_fit_does_not_depend_on_the_order_trials_ended() -> None:
    """Records arrive in completion order (which varies run to run); the bootstrap draws
    rows by position, so the fit's input is put in grid order first."""
    import random

    from scalingstudy.results import points_of

    records = [r for r in full_status().results if r.status == "Succeeded"]
    options = FitOptions(bootstrap=20, joint=True, joint_bootstrap=20)
    first = fit_points(points_of(records), options).to_json()
    random.Random(7).shuffle(records)
    assert fit_points(points_of(records), options).to_json() == first


def test_the_largest_possible_status_fits_in_one_object() -> None:
    """MAX_TRIALS failed rows of the worst kind plus the full fit stay under the limit the
    operator writes (and the API server stores it: tests/cluster/test_validation.py)."""
    from scalingstudy.cluster.status_builder import within_limit
    from scalingstudy.contract import STATUS_BYTES_MAX
    from tests.status_samples import largest_status

    status = largest_status()
    size = len(json.dumps(status.to_json(), ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= STATUS_BYTES_MAX, size
    assert within_limit(status, 1, "now") is status
    doubled = status.model_copy(update={"results": status.results * 2})
    failed = within_limit(doubled, 1, "now")
    assert failed.phase == "Failed" and failed.fit is None
    reason = next(c for c in failed.conditions if c.type == "Failed")
    assert reason.reason == "StatusTooLarge" and "bytes" in (reason.message or "")
