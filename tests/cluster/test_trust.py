"""Results nobody can forge: the Pushgateway accepts pushes from anyone who can reach it,
so its samples never override a trial's own termination message. Attacks tried on the
real control plane, Pushgateway and Prometheus."""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx

from tests.cluster.conftest import Cluster, Operator, study_doc, wait_until
from tests.cluster.test_operator import events, finished
from tests.contract_trainer import expected_loss


def push(cluster: Cluster, labels: dict[str, str], value: float) -> None:
    """What an attacker with network access to the Pushgateway can do."""
    path = "/".join(f"{k}/{v}" for k, v in labels.items())
    name = "scalingstudy_trial_validation_loss"
    body = f"# TYPE {name} gauge\n{name} {value}\n"
    r = httpx.put(f"{cluster.env['PUSHGATEWAY_URL']}/metrics/{path}", content=body)
    assert r.status_code in (200, 202), r.text


def groups_of(cluster: Cluster, namespace: str, study: str) -> list[dict[str, str]]:
    data = httpx.get(f"{cluster.env['PUSHGATEWAY_URL']}/api/v1/metrics").json()["data"]
    return [
        g["labels"]
        for g in data
        if g["labels"].get("namespace") == namespace and g["labels"].get("study") == study
    ]


def started(cluster: Cluster, namespace: str, trial: str) -> bool:
    jobs = cluster.items("jobs", namespace, f"scalingstudy.io/trial={trial}")
    return bool(jobs and (jobs[0].get("status") or {}).get("startTime"))


def test_forged_pushes_are_not_recorded_and_their_groups_are_deleted(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    quiet, pushing = "forged-d100-m4-s0", "forged-d200-m4-s0"
    doc = study_doc(
        "forged", dataSizes={"values": [100, 200, 400]}, modelSizes={"values": [4]}, parallelism=2
    )
    doc["spec"]["trainer"]["env"] += [
        {"name": "TRIAL_SECONDS", "value": "6"},
        {"name": "NO_PUSH_TRIALS", "value": quiet},  # the contract allows not pushing
    ]
    assert cluster.apply(doc, namespace).returncode == 0
    # A pod with the trial's labels that its Job does not control (a user's copy, or one
    # left by an earlier Job of the name), made before the trial's own pod, ends first
    # with a forged result: never taken.
    stale = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "stale-copy", "labels": {"scalingstudy.io/study": "forged",
                                         "scalingstudy.io/trial": pushing}},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "trainer", "image": "busybox", "command": [sys.executable, "-c", (
                "import sys; open(sys.argv[1], 'w').write("
                "'{\"validation_loss\": 0.0001, \"parameters\": 4}')"),
                "/dev/termination-log"]}]}}  # fmt: skip
    assert cluster.apply(stale, namespace).returncode == 0
    wait_until("both first trials to start", lambda: started(cluster, namespace, quiet)
               and started(cluster, namespace, pushing), timeout=60)  # fmt: skip
    base = {"job": "scalingstudy", "namespace": namespace, "study": "forged"}
    # A sample for a running trial whose trainer never pushes, and one in a group of the
    # pushing trial with an extra grouping label (it survives the trainer's own push).
    push(cluster, {**base, "trial": quiet}, 0.000123)
    push(cluster, {**base, "trial": pushing, "zzz": "x"}, 0.000321)
    wait_until("the stale pod to end", lambda: (cluster.get("pod", "stale-copy", namespace)
               .get("status", {}).get("phase") == "Succeeded"), timeout=60)  # fmt: skip
    status = finished(cluster, "forged", namespace, timeout=120)
    # The copy ended before the trial did: its result was there to be taken, and was not.
    copy_end = cluster.get("pod", "stale-copy", namespace)["status"]["containerStatuses"][0]
    job = cluster.get("job", pushing, namespace)
    assert copy_end["state"]["terminated"]["finishedAt"] <= job["status"]["completionTime"]
    assert status["phase"] == "Succeeded", status.get("conditions")
    rows = {r["trial"]: r for r in status["results"]}
    for trial, data in ((quiet, 100), (pushing, 200)):
        assert rows[trial]["loss"] == expected_loss(data, 4), rows[trial]
        assert (rows[trial]["source"], rows[trial]["verified"]) == ("termination-message", True)
    assert status["fit"]["learningCurve"]["beta"] > -1  # the forged 1e-4 made it about -3
    mismatch = [e for e in events(cluster, namespace, "forged") if e["reason"] == "ResultMismatch"]
    assert any(quiet in e["message"] and "0.000123" in e["message"] for e in mismatch), mismatch
    assert all(e["type"] == "Warning" for e in mismatch)
    # Every group carrying the study's labels went with its trial, the extra one too (the
    # last trial's just after the status that records it: results reach status first).
    wait_until("the study's push groups to go with their trials",
               lambda: groups_of(cluster, namespace, "forged") == [], timeout=30)  # fmt: skip
    metrics = httpx.get(f"http://127.0.0.1:{op.metrics_port}/metrics").text
    line = f'scalingstudy_result_mismatches_total{{namespace="{namespace}",study="forged"}}'
    assert any(row.startswith(line) and float(row.split()[-1]) >= 1 for row in metrics.splitlines())


def test_groups_of_studies_deleted_while_no_operator_ran_are_swept_at_start(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    push(
        cluster,
        {
            "job": "scalingstudy",
            "namespace": namespace,
            "study": "ghost",
            "trial": "ghost-d1-m1-s0",
        },
        0.5,
    )
    assert groups_of(cluster, namespace, "ghost")
    op: Operator = operator_factory(namespace)
    op.start()
    wait_until("the ghost study's group to be swept",
               lambda: not groups_of(cluster, namespace, "ghost"), timeout=60)  # fmt: skip
    time.sleep(0.1)
    assert op.alive()
