"""Disruptions a study must ride out, on the real control plane: a trial pod evicted
mid-training, and an API server that stops answering for 75 s."""

from __future__ import annotations

import collections
import json
import os
import signal
import time
from typing import Any

import pytest

from tests.cluster.conftest import Cluster, Operator, study_doc, wait_until
from tests.cluster.test_operator import finished, job_creations, results_at_least
from tests.harness import cluster as harness


@pytest.mark.slow(45)
def test_an_evicted_trial_resumes_from_its_checkpoint_without_using_its_backoff(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    doc = study_doc(
        "evicted",
        dataSizes={"values": [128, 256, 512]},
        modelSizes={"values": [8]},
        training={"minSteps": 12000, "maxSteps": 12000, "evalEvery": 20, "batchSize": 32,
                  "earlyStopping": {"patience": 1000}},
        parallelism=3,
    )  # fmt: skip
    trainer = doc["spec"]["trainer"]
    trainer.pop("command")  # the built-in trainer, which checkpoints on SIGTERM
    trainer["env"] = [e for e in trainer["env"] if e["name"] != "PYTHONPATH"]
    trainer["volumes"] = [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}}]
    trainer["volumeMounts"] = [{"name": "checkpoints", "mountPath": "/ckpt"}]
    assert trainer["backoffLimit"] == 0  # a counted failure would fail the trial
    assert cluster.apply(doc, namespace).returncode == 0
    trial = "evicted-d512-m8-s0"

    def running_pod() -> str | None:
        pods = cluster.items("pods", namespace, f"scalingstudy.io/trial={trial}")
        up = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        return up[0]["metadata"]["name"] if up else None

    pod = wait_until("the trial's pod to run", running_pod, timeout=90)

    def steps_done() -> int:
        """The trainer's own progress log (JSON lines), where the test agent keeps it."""
        logs = list((cluster.dir / "pods" / namespace).glob(f"{pod}-*/log"))
        steps = [json.loads(line).get("step", 0) for path in logs
                 for line in path.read_text().splitlines() if line.startswith("{")]  # fmt: skip
        return max(steps, default=0)

    wait_until("training to be well under way", lambda: steps_done() >= 1000, timeout=120)
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod, "namespace": namespace}}  # fmt: skip
    cluster.kubectl("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction",
                    "-f", "-", input=json.dumps(eviction))  # fmt: skip
    status = finished(cluster, "evicted", namespace, timeout=240)
    assert status["phase"] == "Succeeded", status.get("conditions")
    assert [r["trial"] for r in status["results"]].count(trial) == 1
    # The evicted pod is gone (eviction deletes it); its replacement resumed. Had the
    # agent dropped the DisruptionTarget condition when it wrote the exit (143), the Job
    # would have counted a failure and, with backoffLimit 0, failed the trial.
    (retry,) = cluster.items("pods", namespace, f"scalingstudy.io/trial={trial}")
    assert retry["metadata"]["name"] != pod
    message = retry["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert json.loads(message)["resumed_from_step"] > 0
    job = cluster.items("jobs", namespace, f"scalingstudy.io/trial={trial}")[0]
    assert not job["status"].get("failed")  # the eviction did not count


@pytest.mark.slow(95)
def test_a_75_second_api_server_outage_mid_study_ends_with_one_job_per_trial(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    doc = study_doc("outage", parallelism=4)
    doc["spec"]["trainer"]["env"].append({"name": "TRIAL_SECONDS", "value": "3"})
    assert cluster.apply(doc, namespace).returncode == 0
    results_at_least(cluster, "outage", namespace, 2, timeout=120)
    (pid,) = [p for name, p, _ in harness.recorded(cluster.dir) if name == "kube-apiserver"]
    os.kill(pid, signal.SIGSTOP)  # the API server stops answering; trials go on
    try:
        time.sleep(75)
    finally:
        os.kill(pid, signal.SIGCONT)
    status = finished(cluster, "outage", namespace, timeout=300)
    assert status["phase"] == "Succeeded", status.get("conditions")
    assert len({r["trial"] for r in status["results"]}) == len(status["results"]) == 10
    creations = job_creations(cluster, namespace)
    assert len(creations) == 10 and set(creations.values()) == {1}, creations
    assert op.alive()
    assert collections.Counter(r["status"] for r in status["results"]) == {"Succeeded": 10}
