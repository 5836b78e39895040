"""Trials of two pods on the real control plane: each trial an Indexed Job of two pods
that rendezvous on pod 0 and train together (the built-in trainer, DDP over gloo), one
result per trial read from pod 0, and a pod killed mid-trial (the operator SIGKILLed
with it) failing and retrying the whole trial without a duplicate Job or result.

Real: the kube-apiserver, the Job controller (Indexed Jobs, successPolicy,
podFailurePolicy, pod replacement), the operator, torchrun's agent, the static TCP
rendezvous and gloo between the two pods' processes. Stand-ins: the node agent for the
kubelet, and for cluster DNS the hosts file it gives each pod (pod 0's stable hostname
`<trial>-0.<trial>` on this machine's loopback; see tests/harness/agent.py).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import (
    Cluster,
    Operator,
    pod_events,
    study_doc,
    trained_alone,
    wait_until,
)
from tests.cluster.test_operator import finished, job_creations

TRAINING = {"minSteps": 800, "maxSteps": 800, "evalEvery": 50, "batchSize": 32,
            "learningRate": 3e-3, "earlyStopping": {"patience": 1000}}  # fmt: skip


def _processes(trial: str, node_rank: int) -> list[int]:
    """PIDs of one pod's processes (its launcher and its training process), by the
    contract variables in their environment."""
    found = []
    want = {f"SCALINGSTUDY_TRIAL={trial}".encode(), f"SCALINGSTUDY_NODE_RANK={node_rank}".encode()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if want <= env:
            found.append(int(entry.name))
    return found


def _steps(cluster: Cluster, namespace: str, trial: str) -> int:
    """The furthest step in the trial's pod-0 logs (rank 0's JSON lines)."""
    events = pod_events(cluster, namespace, f"{trial}-0-")
    return max((e.get("step", 0) for pod in events for e in pod), default=0)


@pytest.mark.slow(95)
def test_each_trial_runs_as_two_pods_that_train_together_and_a_killed_pod_retries_the_trial(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    doc = study_doc(
        "ddp",
        dataSizes={"values": [256, 512, 1024]},
        modelSizes={"values": [8]},
        training=TRAINING,
        parallelism=1,  # the pods share one loopback: one rendezvous port in use at a time
    )
    trainer = doc["spec"]["trainer"]
    trainer.pop("command")  # the built-in trainer
    trainer["env"] = [e for e in trainer["env"] if e["name"] != "PYTHONPATH"]
    trainer.update(nodes=2, processesPerPod=1, backoffLimit=1)
    op: Operator = operator_factory(namespace)
    op.start()
    assert cluster.apply(doc, namespace).returncode == 0
    first = "ddp-d256-m8-s0"

    wait_until("the first trial to train on both pods",
               lambda: _steps(cluster, namespace, first) >= 200, timeout=240)  # fmt: skip
    victims = _processes(first, 1)
    assert victims, "pod 1's processes"
    for pid in victims:  # the whole pod dies at once (OOM kill, lost node)
        os.kill(pid, signal.SIGKILL)
    op.kill()  # and the operator with it: its restart finds the Job and the Service there
    op.start()

    status = finished(cluster, "ddp", namespace, timeout=600)
    assert status["phase"] == "Succeeded", status.get("conditions")
    rows = {r["trial"]: r for r in status["results"]}
    assert sorted(rows) == ["ddp-d1024-m8-s0", "ddp-d256-m8-s0", "ddp-d512-m8-s0"]
    assert all(r["status"] == "Succeeded" and r["steps"] == 800 for r in rows.values())
    assert set(job_creations(cluster, namespace).values()) == {1}  # one Job per trial

    job = cluster.get("job", first, namespace)
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    assert job["status"]["failed"] >= 1  # the killed attempt, retried as a whole
    # Both pods ran again. Counted from the test agent's directory per pod it ran (named
    # job-index-suffix), which keeps every attempt: the API server's pod list may have
    # dropped the killed attempt by now (CI once saw indexes ['0', '0', '1']).
    ran = cluster.dir / "pods" / namespace
    attempts = {i: len(list(ran.glob(f"{first}-{i}-*"))) for i in ("0", "1")}
    assert attempts["0"] >= 2 and attempts["1"] >= 2, attempts

    # Really trained together: two processes, and the loss of the same trial trained by
    # one process here, within the tolerance of a changed summation order.
    single = trained_alone(cluster, namespace, first, TRAINING)
    assert abs(rows[first]["loss"] - single["validation_loss"]) <= 1e-3 * single["validation_loss"]
    pod1_logs = list((cluster.dir / "pods" / namespace).glob(f"{first}-1-*/log"))
    assert pod1_logs and not any('"result"' in p.read_text() for p in pod1_logs)
    # The rendezvous Services go once their trials are recorded.
    wait_until("the trials' Services to go",
               lambda: not cluster.items("services", namespace), timeout=60)  # fmt: skip
