"""`scalingstudy run` (the pydantic spec) and the API server (the CRD's schema and CEL
rules) accept and refuse the same studies (issues 37 and 42).

The CASES are run here through the pydantic model and, in
tests/cluster/test_spec_agreement.py, through a real API server: each side must give the
verdict listed, so the two agree. No CEL evaluator ships with the project, so the CEL
side needs the control plane; the rules whose CEL form is a closed-form comparison
(`spec.grid.reaches`) are checked here against the sizes the grid really makes, over
many random ranges.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from scalingstudy.spec import MAX_LIST_SIZES, ModelSizeGrid, SizeGrid, SpecError, parse_study
from scalingstudy.spec.grid import reaches, reaches_half

#: A study of the built-in task (its parameter counts are known without a trainer).
BASE: dict[str, Any] = {
    "apiVersion": "scalingstudy.io/v1alpha1",
    "kind": "ScalingStudy",
    "metadata": {"name": "agreement"},
    "spec": {
        "task": {"name": "teacher-student"},
        "dataSizes": {"values": [100, 200, 400, 800, 1600]},
        "modelSizes": {"values": [4, 16]},
        "fit": {"bootstrap": 50},
    },
}
#: teacher-student widths 4 to 64 are 93 to 5,313 parameters: D = C / (6 N) of budgets
#: 1e11 to 1e13 lies within these data sizes.
ISOFLOP: dict[str, Any] = {
    "dataSizes": {"min": 1000, "max": 10**10, "factor": 10},
    "modelSizes": {"values": [4, 8, 16, 32, 64]},
}


def _isoflop(budgets: dict[str, Any], **design: Any) -> dict[str, Any]:
    return {**ISOFLOP, "design": {"strategy": "isoflop", "computeBudgets": budgets, **design}}


#: (name, spec fields replaced, whether both sides accept it)
#: (pytest.param where one side still differs, with why)
CASES: list[Any] = [
    # dataSizes ranges (issue 42): 10-35 by 2 made 3 sizes locally, the CRD refused it;
    # 1-2 by 1.2 passed the CRD and rounded to 2 sizes locally.
    ("data 10-35 by 2", {"dataSizes": {"min": 10, "max": 35, "factor": 2}}, False),
    ("data 1-2 by 1.2", {"dataSizes": {"min": 1, "max": 2, "factor": 1.2}}, False),
    ("data 10-40 by 2", {"dataSizes": {"min": 10, "max": 40, "factor": 2}}, True),
    ("data 100-6400 by 2", {"dataSizes": {"min": 100, "max": 6400, "factor": 2}}, True),
    ("data 1-4 by 2", {"dataSizes": {"min": 1, "max": 4, "factor": 2}}, True),
    ("data 100-1e9 by 1.1", {"dataSizes": {"min": 100, "max": 10**9, "factor": 1.1}}, False),
    # Range sizes counted the same way on both sides (at most 64).
    ("model 1-2^30 by 1.4", {"modelSizes": {"min": 1, "max": 2**30, "factor": 1.4}}, True),
    ("model 1-2^31 by 1.4", {"modelSizes": {"min": 1, "max": 2**31, "factor": 1.4}}, False),
    ("model 1-5 by 1.1", {"modelSizes": {"min": 1, "max": 5, "factor": 1.1}}, True),
    # IsoFLOP budgets (issue 37): no near-duplicates, a factor that separates them.
    ("budgets by 3.16", _isoflop({"min": 1e11, "max": 1e12, "factor": 3.16}), True),
    ("budgets by 1.6", _isoflop({"min": 1e11, "max": 1e12, "factor": 1.6}), True),
    ("budgets by 1.2", _isoflop({"min": 1e11, "max": 1e12, "factor": 1.2}), False),
    ("budgets 17 by 1.6", _isoflop({"min": 1e11, "max": 1e11 * 1.6**16, "factor": 1.6}), False),
    ("budgets listed apart", _isoflop({"values": [1e11, 3e11, 1e12]}), True),
    # A range narrower than the separation: two budgets the fit cannot tell apart.
    ("budgets 1e11-1.01e11", _isoflop({"min": 1e11, "max": 1.01e11, "factor": 2}), False),
    ("budgets listed close", _isoflop({"values": [1e11, 1.1e11, 1e12, 3e12]}), False),
    # stopWhen and extendModelSizes only mean something to an adaptive study.
    (
        "isoflop stopWhen",
        _isoflop({"values": [1e11, 3e11, 1e12]}, stopWhen={"betaIntervalWidth": 0.1}),
        False,
    ),
    (
        "isoflop extendModelSizes",
        _isoflop({"values": [1e11, 3e11, 1e12]}, extendModelSizes=True, maxModelSize=1000),
        False,
    ),
    (
        "adaptive stopWhen",
        {"design": {"strategy": "adaptive", "stopWhen": {"betaIntervalWidth": 0.1}}},
        True,
    ),
    # Pruning (issue 38): rungs increase strictly; curves are validation loss, so the
    # metric must be; an IsoFLOP study's trials of one data size do not compete.
    ("pruning rungs", {"design": {"pruning": {"enabled": True, "rungs": [0.3, 0.5]}}}, True),
    ("pruning rungs unsorted", {"design": {"pruning": {"rungs": [0.5, 0.3]}}}, False),
    ("pruning rungs repeated", {"design": {"pruning": {"rungs": [0.3, 0.3]}}}, False),
    (
        "pruning needs validation_loss",
        {"metric": {"name": "error_rate"}, "design": {"pruning": {"enabled": True}}},
        False,
    ),
    (
        "adaptive pruning of several seeds",
        {"seeds": 2, "design": {"strategy": "adaptive", "pruning": {"enabled": True}}},
        False,
    ),
    (
        "adaptive pruning of one seed",
        {"seeds": 1, "design": {"strategy": "adaptive", "pruning": {"enabled": True}}},
        True,
    ),
    (
        "isoflop pruning",
        _isoflop({"values": [1e11, 3e11, 1e12]}, pruning={"enabled": True}),
        False,
    ),
    # workloadPriorityClassName becomes a label value: at most 63 characters.
    ("priority class 63", {"queueName": "q", "workloadPriorityClassName": "p" * 63}, True),
    ("priority class 64", {"queueName": "q", "workloadPriorityClassName": "p" * 64}, False),
]


def study(fields: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["spec"].update(copy.deepcopy(fields))
    return doc


def case_id(case: Any) -> str:
    return str(case.values[0] if hasattr(case, "values") else case[0])


def test_the_base_study_is_valid() -> None:
    parse_study(study({}))


@pytest.mark.parametrize(("name", "fields", "accepted"), CASES, ids=[case_id(c) for c in CASES])
def test_the_spec_gives_the_agreed_verdict(
    name: str, fields: dict[str, Any], accepted: bool
) -> None:
    try:
        parse_study(study(fields))
    except SpecError as exc:
        assert not accepted, f"{name}: refused: {exc}"
    else:
        assert accepted, f"{name}: accepted"


def _random_range(rng: random.Random) -> tuple[int, int, float]:
    low = rng.choice([1, 2, 3, 10, 100, 1000, rng.randint(1, 10**6)])
    factor = rng.choice([1.05, 1.1, 1.2, 1.5, 2, 3, 10, round(rng.uniform(1.01, 20), 3)])
    high = low + max(1, round(low * factor ** rng.uniform(0, 70)) - low)
    return low, high, factor


def test_the_closed_form_rules_count_the_sizes_the_grid_makes() -> None:
    """The CRD cannot run `sizes()`: its rules compare max with min x factor^k. Over
    2,000 random ranges the comparisons say exactly what the sizes are: a data-size range
    is valid when its first step is at least 1 and max reaches min x factor^2, and then
    gives 3 to 64 distinct sizes ending at max; any range gives more than 64 exactly when
    max lies past min x factor^63.5."""
    rng = random.Random(42)
    for _ in range(2000):
        low, high, factor = _random_range(rng)
        too_many = reaches_half(low, high, factor, MAX_LIST_SIZES - 1)
        try:
            sizes = ModelSizeGrid(min=low, max=high, factor=factor).sizes()
        except ValueError:
            assert too_many, (low, high, factor)
            continue
        assert not too_many and len(sizes) <= MAX_LIST_SIZES
        assert sizes[0] == low and sizes[-1] == high and sizes == sorted(set(sizes))
        rule = low * (factor - 1.0) >= 1.0 and reaches(low, high, factor, 2)
        try:
            data = SizeGrid(min=low, max=high, factor=factor).sizes()
        except ValueError:
            assert not rule, (low, high, factor)
            continue
        assert rule and data == sizes and len(data) >= 3, (low, high, factor, data)
        # A first step of at least 1: no size rounds onto another, so the count is the
        # closed form's (full steps within max, plus max when over half a step is left).
        steps = max(k for k in range(70) if reaches(low, high, factor, k))
        assert len(data) == steps + 1 + reaches_half(low, high, factor, steps)


def _design_messages() -> list[str]:
    from scalingstudy.crd import crd

    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    design = schema["properties"]["spec"]["properties"]["design"]
    return [rule["message"] for rule in design["x-kubernetes-validations"]]


@pytest.mark.parametrize(
    ("design", "word"),
    [
        ({"stopWhen": {"betaIntervalWidth": 0.1}}, "stopWhen"),
        ({"extendModelSizes": True, "maxModelSize": 1000}, "extendModelSizes"),
    ],
)
def test_isoflop_refuses_adaptive_settings_with_the_crds_message(
    design: dict[str, Any], word: str
) -> None:
    """`scalingstudy run` accepted stopWhen and extendModelSizes with isoflop and ignored
    them; the CRD refused them (issue 37). Now refused with the CRD's own words."""
    (message,) = [m for m in _design_messages() if m.startswith(f"{word} needs strategy")]
    fields = _isoflop({"values": [1e11, 3e11, 1e12]}, **design)
    with pytest.raises(SpecError) as refused:
        parse_study(study(fields))
    assert refused.value.problems == [f"spec.design: {message}"]
