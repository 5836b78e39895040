"""Malformed studies never reach the operator: the API server rejects them at
`kubectl apply`, and the message names the field at fault (CRD schema and CEL rules)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from scalingstudy.status import ScalingStudyStatus
from tests.cluster.conftest import Cluster, study_doc
from tests.status_samples import full_status, largest_status


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {}) if not key.isdigit() else node[int(key)]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


_DELETE = object()
BASE = study_doc("base")["spec"]
MOUNT = {"name": "data", "mountPath": "relative/path"}

# (what is set, value, the field the error must name)
INVALID = [
    ("spec.parallelism", 0, "spec.parallelism"),
    ("spec.parallelism", 5000, "spec.parallelism"),
    ("spec.seeds", 0, "spec.seeds"),
    ("spec.seeds", 33, "spec.seeds"),
    ("spec.task", _DELETE, "spec.task"),
    ("spec.task.name", "Bad_Name", "spec.task.name"),
    ("spec.dataSizes", _DELETE, "spec.dataSizes"),
    ("spec.dataSizes", {"min": 10, "max": 100, "factor": 1}, "spec.dataSizes.factor"),
    ("spec.dataSizes", {"values": [0, 10, 20]}, "spec.dataSizes.values[0]"),
    ("spec.dataSizes", {"min": 10, "max": 100, "values": [10, 20, 40]}, "spec.dataSizes"),
    ("spec.dataSizes", {"values": [10, 20]}, "spec.dataSizes"),
    ("spec.dataSizes", {"min": 10, "max": 30, "factor": 2}, "spec.dataSizes"),
    ("spec.dataSizes", {"values": [10, 20, 20, 40]}, "spec.dataSizes.values[2]"),
    ("spec.modelSizes", {"values": []}, "spec.modelSizes"),
    ("spec.training", {"learningRate": 0}, "spec.training.learningRate"),
    ("spec.training", {"minSteps": 500, "maxSteps": 100}, "spec.training"),
    ("spec.training", {"batchSize": 0}, "spec.training.batchSize"),
    ("spec.metric", {"goal": "maximize"}, "spec.metric.goal"),
    ("spec.fit", {"confidence": 0.2}, "spec.fit.confidence"),
    ("spec.fit", {"form": "linear"}, "spec.fit.form"),
    ("spec.fit", {"bootstrap": -1}, "spec.fit.bootstrap"),
    ("spec.maxFailedTrials", -1, "spec.maxFailedTrials"),
    ("spec.queueName", "Not A Label", "spec.queueName"),
    ("spec.trainer.backoffLimit", 11, "spec.trainer.backoffLimit"),
    ("spec.trainer.nodes", 129, "spec.trainer.nodes"),
    ("spec.workloadPriorityClassName", "low", "needs queueName"),
    ("spec.trainer.processesPerPod", 0, "spec.trainer.processesPerPod"),
    (
        "spec.trainer.tolerations",
        [{"key": "gpu", "operator": "Maybe"}],
        "spec.trainer.tolerations[0].operator",
    ),
    ("spec.trainer.env", [{"name": "1BAD", "value": "x"}], "spec.trainer.env[0].name"),
    ("spec.trainer.volumeMounts", [MOUNT], "spec.trainer.volumeMounts[0].mountPath"),
    ("spec.trainer.nodeSelector", {"gpu": "a value with spaces"}, "spec.trainer.nodeSelector"),
    ("spec.trainer.nodeSelector", {"bad key!": "x"}, "spec.trainer.nodeSelector"),
    (
        "spec.trainer.volumes",
        [{"name": "scalingstudy-tmp", "emptyDir": {}}],
        "spec.trainer.volumes",
    ),
    (
        "spec.trainer.volumeMounts",
        [{"name": "d", "mountPath": "/tmp"}],
        "spec.trainer.volumeMounts",
    ),
    ("spec.task.options", {f"k{i}": i for i in range(65)}, "spec.task.options"),
    ("spec.unknownField", 1, "unknownField"),
    # 40 data sizes x 51 model sizes = 2,040 trials: over the limit of 2,000 (CEL on spec).
    (
        "spec",
        {
            **BASE,
            "dataSizes": {"values": list(range(1, 41))},
            "modelSizes": {"values": list(range(1, 52))},
        },
        "at most 2000 trials",
    ),
    ("metadata.name", "x" * 64, "metadata.name"),
    ("spec.design", {"strategy": "sometimes"}, "spec.design.strategy"),
    ("spec.design", {"strategy": "adaptive", "modelSizeWindow": 1}, "spec.design.modelSizeWindow"),
    ("spec.design", {"stopWhen": {"betaIntervalWidth": 0.1}}, "stopWhen needs strategy: adaptive"),
    ("spec.design", {"strategy": "adaptive", "stopWhen": {}}, "stopWhen needs one or more of"),
    ("spec.design", {"strategy": "adaptive", "extendModelSizes": True}, "needs maxModelSize"),
    ("spec.design", {"budget": {"gpuHours": 0}}, "spec.design.budget.gpuHours"),
    ("spec.design", {"computeShare": 0.5}, "computeShare needs strategy: adaptive"),
    ("spec.design", {"strategy": "isoflop"}, "strategy: isoflop needs computeBudgets"),
    ("spec.design", {"computeBudgets": {"values": [1e12]}}, "strategy: isoflop needs"),
    (
        "spec.design",
        {"strategy": "isoflop", "computeBudgets": {"min": 1e12, "max": 1e11}},
        "a range needs min < max",
    ),
    ("spec.modelSizes", {"values": [4, 16], "parameters": [100]}, "one parameter count per"),
]


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> str:
    name = "validation"
    cluster.kubectl("create", "namespace", name, check=False)
    return name


@pytest.mark.parametrize(
    ("path", "value", "field"), INVALID, ids=[f"{p}={str(v)[:20]}" for p, v, _ in INVALID]
)
def test_invalid_study_is_rejected_naming_the_field(
    cluster: Cluster, ns: str, path: str, value: Any, field: str
) -> None:
    doc = study_doc("invalid")
    _set(doc, path, value if value is _DELETE else copy.deepcopy(value))
    out = cluster.apply(doc, ns)
    if out.returncode == 0:
        cluster.kubectl("delete", "scalingstudy", "--all", "-n", ns)
    assert out.returncode != 0, f"accepted: {path}={value!r}"
    assert field in out.stderr, out.stderr


def test_at_least_twenty_kinds_of_invalid_study() -> None:
    assert len(INVALID) >= 20


def test_immutable_fields_cannot_change_after_creation(cluster: Cluster, namespace: str) -> None:
    doc = study_doc("frozen")
    assert cluster.apply(doc, namespace).returncode == 0
    for path, value in (
        ("spec.task", {"name": "char-lm"}),
        ("spec.training", {"maxSteps": 77}),
        ("spec.metric", {"name": "validation_error"}),
    ):
        changed = copy.deepcopy(doc)
        _set(changed, path, value)
        out = cluster.apply(changed, namespace)
        assert out.returncode != 0
        assert f"{path} is immutable" in out.stderr, out.stderr
    # Growing the grid is allowed: results so far stay valid.
    grown = copy.deepcopy(doc)
    grown["spec"]["dataSizes"]["values"].append(3200)
    assert cluster.apply(grown, namespace).returncode == 0


def test_the_status_a_pass_writes_is_stored_exactly_as_written(
    cluster: Cluster, namespace: str
) -> None:
    """The real API server prunes status keys its schema does not declare and rejects
    wrong types: a full status from a real pass and fit must come back unchanged."""
    assert cluster.apply(study_doc("status-round-trip"), namespace).returncode == 0
    written = full_status().to_json()
    cluster.kubectl(
        "patch", "scalingstudy", "status-round-trip", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": written}),
    )  # fmt: skip
    stored = cluster.get("scalingstudy", "status-round-trip", namespace)["status"]
    assert stored == written
    assert ScalingStudyStatus.model_validate(stored).to_json() == written


def test_the_largest_status_a_study_can_have_is_stored(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """2,000 failed trials with the longest names, reasons and messages, and the full fit:
    etcd takes it (a status over its limit used to make every later write fail)."""
    assert cluster.apply(study_doc("largest"), namespace).returncode == 0
    written = largest_status().to_json()
    patch = tmp_path / "status.json"
    patch.write_text(json.dumps({"status": written}))
    cluster.kubectl(
        "patch", "scalingstudy", "largest", "-n", namespace, "--subresource=status",
        "--type=merge", f"--patch-file={patch}",
    )  # fmt: skip
    stored = cluster.get("scalingstudy", "largest", namespace)["status"]
    assert len(stored["results"]) == 2000 and stored == written
