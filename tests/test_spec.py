"""The spec models: what loads, what is refused, and how the refusal reads."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from scalingstudy.spec import (
    MAX_TRIALS,
    ModelSizeGrid,
    SizeGrid,
    SpecError,
    load_study,
    parse_study,
)

Doc = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        node = doc
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return apply


def _delete(path: str) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        node = doc
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        del node[last]

    return apply


def _all(*mutations: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        for mutate in mutations:
            mutate(doc)

    return apply


# (mutation, text the one message must contain: the field, and what is allowed)
INVALID: list[tuple[str, Callable[[Doc], None], list[str]]] = [
    ("factor 1", _set("spec.dataSizes.factor", 1), ["spec.dataSizes.factor", "greater than 1"]),
    ("factor 0.5", _set("spec.dataSizes.factor", 0.5), ["spec.dataSizes.factor"]),
    (
        "min > max",
        _set("spec.dataSizes", {"min": 1000, "max": 10}),
        ["spec.dataSizes", "min must be smaller than max", "min=1000"],
    ),
    (
        "range and values",
        _set("spec.dataSizes", {"min": 10, "max": 100, "values": [1, 2, 3]}),
        ["spec.dataSizes", "either values"],
    ),
    ("range without max", _set("spec.modelSizes", {"min": 4}), ["spec.modelSizes", "min and max"]),
    (
        "zero data size",
        _set("spec.dataSizes", {"values": [0, 10, 100]}),
        ["spec.dataSizes.values[0]", "greater than or equal to 1"],
    ),
    (
        "repeated values",
        _set("spec.modelSizes", {"values": [4, 4, 8]}),
        ["spec.modelSizes", "must not repeat"],
    ),
    ("two data sizes", _set("spec.dataSizes", {"values": [10, 20]}), ["spec", "at least 3"]),
    (
        "too many sizes",
        _set("spec.dataSizes", {"min": 1, "max": 2**40, "factor": 1.5}),
        ["spec.dataSizes", "at most 64"],
    ),
    ("seeds 33", _set("spec.seeds", 33), ["spec.seeds", "less than or equal to 32"]),
    (
        "trial product",
        _all(
            _set("spec.dataSizes", {"values": list(range(1, 51))}),
            _set("spec.modelSizes", {"values": list(range(1, 42))}),
        ),
        ["spec", "2050 trials; at most 2000"],
    ),
    (
        "seeds x grid",
        _all(_set("spec.dataSizes", {"min": 1, "max": 2**20}), _set("spec.seeds", 32)),
        ["spec", "6048 trials"],
    ),
    ("seeds 0", _set("spec.seeds", 0), ["spec.seeds", "greater than or equal to 1"]),
    ("parallelism 0", _set("spec.parallelism", 0), ["spec.parallelism"]),
    ("negative maxFailedTrials", _set("spec.maxFailedTrials", -1), ["spec.maxFailedTrials"]),
    (
        "task name uppercase",
        _set("spec.task.name", "Teacher_Student"),
        ["spec.task.name", "pattern"],
    ),
    ("task missing", _delete("spec.task"), ["spec.task", "required"]),
    ("unknown field", _set("spec.dataSize", {"min": 1}), ["spec.dataSize", "unknown field"]),
    (
        "minSteps > maxSteps",
        _set("spec.training", {"minSteps": 100, "maxSteps": 10}),
        ["spec.training", "minSteps must not exceed maxSteps"],
    ),
    ("learning rate 0", _set("spec.training.learningRate", 0), ["spec.training.learningRate"]),
    (
        "patience 0",
        _set("spec.training.earlyStopping", {"patience": 0}),
        ["spec.training.earlyStopping.patience"],
    ),
    (
        "metric goal maximize",
        _set("spec.metric", {"goal": "maximize"}),
        ["spec.metric.goal", "minimize"],
    ),
    ("confidence 1.5", _set("spec.fit.confidence", 1.5), ["spec.fit.confidence"]),
    ("fit form unknown", _set("spec.fit.form", "exponential"), ["spec.fit.form", "auto"]),
    ("name too long", _set("metadata.name", "x" * 64), ["metadata.name", "63"]),
    ("name with dot", _set("metadata.name", "my.study"), ["metadata.name", "pattern"]),
    (
        "reserved env",
        _set("spec.trainer.env", [{"name": "SCALINGSTUDY_TRIAL", "value": "x"}]),
        ["spec.trainer.env[0].name", "SCALINGSTUDY_"],
    ),
    (
        "mount of no volume",
        _set("spec.trainer.volumeMounts", [{"name": "data", "mountPath": "/d"}]),
        ["spec.trainer", "names no entry of trainer.volumes"],
    ),
    (
        "relative mount",
        _set("spec.trainer.volumeMounts", [{"name": "data", "mountPath": "d"}]),
        ["spec.trainer.volumeMounts[0].mountPath"],
    ),
    ("backoff 11", _set("spec.trainer.backoffLimit", 11), ["spec.trainer.backoffLimit"]),
    (
        "node selector value",
        _set("spec.trainer.nodeSelector", {"gpu": "a value with spaces"}),
        ["spec.trainer.nodeSelector.gpu"],
    ),
    (
        "node selector key",
        _set("spec.trainer.nodeSelector", {"bad key!": "x"}),
        ["spec.trainer.nodeSelector", "not a label key"],
    ),
    (
        "reserved volume",
        _set("spec.trainer.volumes", [{"name": "scalingstudy-tmp", "emptyDir": {}}]),
        ["spec.trainer", "operator's own"],
    ),
    (
        "mount over /tmp",
        _set("spec.trainer.volumeMounts", [{"name": "d", "mountPath": "/tmp"}]),
        ["spec.trainer", "/tmp"],
    ),
    (
        "huge task options",
        _set("spec.task.options", {"blob": "x" * 20000}),
        ["spec.task.options", "bytes as JSON"],
    ),
    ("queue name", _set("spec.queueName", "Team Queue"), ["spec.queueName"]),
    ("wrong kind", _set("kind", "Job"), ["kind", "ScalingStudy"]),
    ("wrong apiVersion", _set("apiVersion", "scalingstudy.io/v1"), ["apiVersion"]),
    ("string for int", _set("spec.seeds", "three"), ["spec.seeds", "integer"]),
]


@pytest.mark.parametrize(("label", "mutate", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_is_rejected_naming_the_field(
    quickstart_doc: Doc, label: str, mutate: Callable[[Doc], None], expected: list[str]
) -> None:
    doc = copy.deepcopy(quickstart_doc)
    mutate(doc)
    with pytest.raises(SpecError) as info:
        parse_study(doc)
    text = "\n".join(info.value.problems)
    for fragment in expected:
        assert fragment in text, f"{label}: {fragment!r} not in {text!r}"


def test_every_problem_is_reported_not_just_the_first(quickstart_doc: Doc) -> None:
    doc = copy.deepcopy(quickstart_doc)
    doc["spec"]["seeds"] = 0
    doc["spec"]["parallelism"] = 0
    with pytest.raises(SpecError) as info:
        parse_study(doc)
    assert len(info.value.problems) == 2


def test_example_files_load() -> None:
    for path in sorted(Path(__file__).resolve().parents[1].glob("examples/*.yaml")):
        study = load_study(path)
        assert study.spec.trial_count() >= 1, path


def test_defaults_fill_an_minimal_study() -> None:
    study = parse_study(
        {
            "apiVersion": "scalingstudy.io/v1alpha1",
            "kind": "ScalingStudy",
            "metadata": {"name": "tiny"},
            "spec": {
                "task": {"name": "teacher-student"},
                "dataSizes": {"values": [10, 20, 40]},
                "modelSizes": {"values": [1]},
            },
        }
    )
    assert study.spec.parallelism == 4
    assert study.spec.training.early_stopping.patience == 5
    assert study.spec.fit.form == "auto"


def test_geometric_range_sizes() -> None:
    assert SizeGrid(min=1000, max=1024000, factor=2).sizes() == [1000 * 2**k for k in range(11)]
    assert SizeGrid(min=10, max=100, factor=3).sizes() == [10, 30, 100]
    # rounding never repeats a size (model sizes; a data-size range whose first step is
    # under 1 is refused: the CRD could not count its sizes)
    assert ModelSizeGrid(min=1, max=5, factor=1.1).sizes() == [1, 2, 3, 4, 5]
    # the last step is never a sliver: 10 to 35 by 2 is 10, 20, 35; 10 to 25 is 10, 25
    assert ModelSizeGrid(min=10, max=35, factor=2).sizes() == [10, 20, 35]
    assert ModelSizeGrid(min=10, max=25, factor=2).sizes() == [10, 25]
    assert SizeGrid(values=[30, 10, 20]).sizes() == [10, 20, 30]


def test_trial_limit_is_exact(quickstart_doc: Doc) -> None:
    doc = copy.deepcopy(quickstart_doc)
    doc["spec"]["dataSizes"] = {"values": list(range(1, 51))}
    doc["spec"]["modelSizes"] = {"values": list(range(1, 41))}
    doc["spec"]["seeds"] = 1
    assert parse_study(doc).spec.trial_count() == MAX_TRIALS
    doc["spec"]["modelSizes"] = {"values": list(range(1, 42))}
    with pytest.raises(SpecError, match="at most 2000"):
        parse_study(doc)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "found 0"),
        ("a: [1, 2", "not valid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("a: 1\n---\nb: 2\n", "found 2"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=fragment):
        load_study(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_study(tmp_path / "nope.yaml")


def test_same_file_is_a_kubernetes_object(quickstart_doc: Doc) -> None:
    """What `scalingstudy run` takes is what `kubectl apply` takes: a whole object."""
    assert quickstart_doc["apiVersion"] == "scalingstudy.io/v1alpha1"
    assert quickstart_doc["kind"] == "ScalingStudy"
    dumped = yaml.safe_dump(quickstart_doc)
    assert parse_study(yaml.safe_load(dumped)) == parse_study(quickstart_doc)
