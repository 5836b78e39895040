"""The operator's own check of what a study may ask for (the admission policy's rules,
for clusters without the policy), and the generated policy files being current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scalingstudy.admission import AdmissionRules, chart_template, policy_yaml, violations
from scalingstudy.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[1]


def spec(**trainer: Any) -> Any:
    return parse_spec(
        {
            "task": {"name": "teacher-student"},
            "dataSizes": {"values": [100, 200, 400]},
            "modelSizes": {"values": [4]},
            "trainer": trainer,
        }
    )


@pytest.mark.parametrize(
    ("trainer", "expected"),
    [
        ({"volumes": [{"name": "r", "hostPath": {"path": "/"}}]},
         "spec.trainer.volumes[0].hostPath: volume type hostPath is not allowed"),
        ({"volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]},
         "spec.trainer.volumes[0].nfs: volume type nfs"),
        ({"volumes": [{"name": "t", "projected": {"sources": [
            {"configMap": {"name": "c"}}, {"serviceAccountToken": {"path": "t"}}]}}]},
         "spec.trainer.volumes[0].projected.sources[1].serviceAccountToken"),
        ({"priorityClassName": "system-node-critical"},
         "spec.trainer.priorityClassName: 'system-node-critical' is not an allowed priority "
         "class (allowed: none)"),
    ],
)  # fmt: skip
def test_node_level_asks_are_refused_naming_the_field(
    trainer: dict[str, Any], expected: str
) -> None:
    (problem,) = violations(spec(**trainer), "ml", AdmissionRules())
    assert problem.startswith(expected)


def test_what_studies_need_is_allowed_and_lists_widen() -> None:
    ok = spec(
        volumes=[
            {"name": "data", "persistentVolumeClaim": {"claimName": "corpus"}},
            {"name": "cfg", "projected": {"sources": [{"configMap": {"name": "c"}}]}},
            {"name": "tmp", "emptyDir": {}},
        ]
    )
    assert violations(ok, "ml", AdmissionRules()) == []
    greedy = spec(
        volumes=[{"name": "r", "hostPath": {"path": "/data"}}], priorityClassName="research"
    )
    assert len(violations(greedy, "ml", AdmissionRules())) == 2
    assert violations(greedy, "lab", AdmissionRules(trusted_namespaces=("lab",))) == []
    wider = AdmissionRules(
        volume_types=("hostPath", *AdmissionRules().volume_types), priority_classes=("research",)
    )
    assert violations(greedy, "ml", wider) == []


def test_a_kueue_workload_priority_class_is_held_to_the_same_allow_list() -> None:
    """Kueue preempts by WorkloadPriorityClass: a study that names one could push other
    teams' Jobs out of the queue, so it is an ask like trainer.priorityClassName."""
    study = parse_spec({
        "task": {"name": "teacher-student"}, "dataSizes": {"values": [100, 200, 400]},
        "modelSizes": {"values": [4]}, "queueName": "gpus",
        "workloadPriorityClassName": "urgent",
    })  # fmt: skip
    (problem,) = violations(study, "ml", AdmissionRules())
    assert problem == (
        "spec.workloadPriorityClassName: 'urgent' is not an allowed priority class (allowed: none)"
    )
    assert violations(study, "ml", AdmissionRules(priority_classes=("urgent",))) == []


def test_committed_policy_files_are_current() -> None:
    assert (ROOT / "crds" / "admission-policy.yaml").read_text() == policy_yaml(), (
        "run `scalingstudy admission-policy > crds/admission-policy.yaml`"
    )
    chart = ROOT / "charts" / "scalingstudy" / "templates" / "admission-policy.yaml"
    assert chart.read_text() == chart_template(), (
        "run `scalingstudy admission-policy --helm > "
        "charts/scalingstudy/templates/admission-policy.yaml`"
    )


def test_a_workload_priority_class_without_a_queue_is_refused() -> None:
    needs = r"workloadPriorityClassName \(a Kueue WorkloadPriorityClass\) needs queueName"
    with pytest.raises(SpecError, match=needs):
        parse_spec({
            "task": {"name": "teacher-student"}, "dataSizes": {"values": [100, 200, 400]},
            "modelSizes": {"values": [4]}, "workloadPriorityClassName": "urgent",
        })  # fmt: skip
