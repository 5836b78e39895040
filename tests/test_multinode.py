"""Trials of several pods, pure parts: the Indexed Job and its headless Service, names
that make valid hostnames, the rendezvous environment, pod 0's result, costs of every
pod, and the settings' validation."""

from __future__ import annotations

from typing import Any

import pytest

from scalingstudy.cluster.manifests import (
    COMPLETION_INDEX,
    JobSettings,
    StudyRef,
    job_manifest,
    service_manifest,
)
from scalingstudy.cluster.observe import success_message
from scalingstudy.planning.cost import devices_per_trial, gpus_per_trial
from scalingstudy.planning.plan import plan_trials, trial_name
from scalingstudy.spec import SpecError, parse_spec
from scalingstudy.trial_env import trial_environment

REF = StudyRef("demo", "ml", "uid-1")


def spec(trainer: dict[str, Any], **extra: Any) -> Any:
    return parse_spec({
        "task": {"name": "teacher-student"},
        "dataSizes": {"values": [100, 200, 400]},
        "modelSizes": {"values": [4, 8]},
        "trainer": trainer,
        **extra,
    })  # fmt: skip


GPU_PODS = {"nodes": 2, "resources": {"limits": {"nvidia.com/gpu": 4}}}


def test_a_trial_of_several_pods_is_an_indexed_job_that_succeeds_with_pod_0() -> None:
    s = spec(GPU_PODS, queueName="gpus")
    trial = plan_trials("demo", s)[0]
    job = job_manifest(REF, s, trial, JobSettings())["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 2, 2)
    assert job["successPolicy"] == {"rules": [{"succeededIndexes": "0"}]}
    assert job["backoffLimit"] == 2 * s.trainer.backoff_limit  # a retry fails every pod
    assert job["suspend"] is True  # one Kueue workload: both pods admitted together
    pod = job["template"]["spec"]
    assert pod["subdomain"] == trial.name
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["SCALINGSTUDY_NODES"]["value"] == "2"
    assert env["SCALINGSTUDY_PROCESSES_PER_POD"]["value"] == "4"  # one per GPU by default
    assert env["SCALINGSTUDY_MASTER_ADDR"]["value"] == f"{trial.name}-0.{trial.name}"
    assert env["SCALINGSTUDY_MASTER_PORT"]["value"] == "29500"
    field = env["SCALINGSTUDY_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == f"metadata.annotations['{COMPLETION_INDEX}']"


def test_a_one_pod_trial_keeps_the_plain_job() -> None:
    s = spec({"processesPerPod": 2})
    job = job_manifest(REF, s, plan_trials("demo", s)[0], JobSettings())["spec"]
    assert "completionMode" not in job and "successPolicy" not in job
    assert (job["completions"], job["parallelism"]) == (1, 1)
    assert "subdomain" not in job["template"]["spec"]
    env = {e["name"]: e.get("value") for e in job["template"]["spec"]["containers"][0]["env"]}
    assert (env["SCALINGSTUDY_NODES"], env["SCALINGSTUDY_NODE_RANK"]) == ("1", "0")
    assert env["SCALINGSTUDY_PROCESSES_PER_POD"] == "2"


def test_the_rendezvous_service_is_headless_owned_and_selects_the_trials_pods() -> None:
    s = spec(GPU_PODS)
    trial = plan_trials("demo", s)[0]
    svc = service_manifest(REF, trial)
    assert svc["metadata"]["name"] == trial.name
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    pod_labels = job_manifest(REF, s, trial, JobSettings())["spec"]["template"]["metadata"]
    assert svc["spec"]["selector"].items() <= pod_labels["labels"].items()


@pytest.mark.parametrize("study", ["demo", "1demo", "my.study", "x" * 60, "9" * 63])
def test_names_of_trials_of_several_pods_are_hostnames_with_room_for_the_index(
    study: str,
) -> None:
    names = {trial_name(study, 10**6, 512, s, pods=16) for s in range(3)}
    assert len(names) == 3
    for name in names:
        assert len(f"{name}-15") <= 63 and name[0].isalpha() and "." not in name
    # One pod: the names of existing studies do not change.
    assert trial_name("demo", 100, 4, 0) == trial_name("demo", 100, 4, 0, pods=1)
    assert trial_name("demo", 100, 4, 0, pods=2) == "demo-d100-m4-s0"


def test_only_pod_0_reports_the_result() -> None:
    def pod(index: str, message: str) -> dict[str, Any]:
        term = {"exitCode": 0, "message": message}
        return {"metadata": {"annotations": {COMPLETION_INDEX: index}},
                "status": {"containerStatuses": [{"name": "trainer",
                                                  "state": {"terminated": term}}]}}  # fmt: skip

    assert success_message([pod("1", ""), pod("0", '{"validation_loss": 1}')]) == (
        '{"validation_loss": 1}'
    )
    assert success_message([pod("1", '{"validation_loss": 9}')]) is None


def test_gpu_seconds_count_every_pod() -> None:
    s = spec(GPU_PODS)
    assert gpus_per_trial(s) == 8 and devices_per_trial(s) == 8
    assert devices_per_trial(spec({"nodes": 3})) == 3  # CPU pods count one device each


def test_the_local_runner_runs_every_process_on_one_machine() -> None:
    s = spec({"nodes": 2, "processesPerPod": 3})
    env = trial_environment("demo", "", plan_trials("demo", s)[0], s, result_file="r.json")
    assert (env["SCALINGSTUDY_NODES"], env["SCALINGSTUDY_PROCESSES_PER_POD"]) == ("1", "6")


@pytest.mark.parametrize(
    ("trainer", "training", "message"),
    [
        ({"nodes": 0}, {}, "spec.trainer.nodes"),
        ({"nodes": 129}, {}, "spec.trainer.nodes"),
        ({"processesPerPod": 0}, {}, "spec.trainer.processesPerPod"),
        ({"nodes": 4, "processesPerPod": 8}, {"batchSize": 16},
         "training.batchSize 16 is smaller than the trial's 32 processes"),
    ],
)  # fmt: skip
def test_bad_distributed_settings_are_rejected_naming_the_field(
    trainer: dict[str, Any], training: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        spec(trainer, training=training)
