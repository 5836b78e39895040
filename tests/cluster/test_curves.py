"""Issue 38 on the test control plane: training curves from the pods' own logs (through
the API server, as `kubectl logs` reads them), live progress in the real Prometheus,
`scalingstudy get`'s curves.csv, and pruning by the operator that a forged pushed curve
cannot drive, across a SIGKILLed and restarted operator.

One study serves every check (a learning-rate sweep of 3 rates over 3 data sizes, with
`tests/curves_trainer.py`, whose curves are known: a slow starter that wins, a fast
starter and a clearly worse rate per slot).
"""

from __future__ import annotations

import collections
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from scalingstudy.cluster.kube import Kube, load_config
from scalingstudy.cluster.pod_logs import PodLogs
from scalingstudy.cluster.pruning_pass import PRUNED_ANNOTATION, PruneMark
from scalingstudy.planning.plan import trial_name
from scalingstudy_sdk.contract import PROGRESS_PUSH_JOB
from scalingstudy_sdk.curve import read_curve
from scalingstudy_sdk.report import exposition, group_url, put_group
from tests.cluster.conftest import ROOT, Cluster, Operator, study_doc, wait_until
from tests.harness.cluster import audit_events, free_port

STUDY = "curves"
SLOW, FAST, BAD = 0.01, 0.1, 1.0


def _spec(forged_target: str) -> dict[str, Any]:
    env = [
        {"name": "PYTHONPATH", "value": f"{ROOT / 'operator'}:{ROOT / 'trainer'}:{ROOT / 'sdk'}"},
        {"name": "EVAL_SECONDS", "value": "1.5"},
        {"name": "NO_PROGRESS_PUSH", "value": forged_target},
    ]
    return study_doc(
        STUDY,
        trainer={"command": [sys.executable, str(ROOT / "tests" / "curves_trainer.py")],
                 "env": env, "backoffLimit": 0},
        dataSizes={"values": [100, 200, 400]},
        modelSizes={"values": [4]},
        learningRates={"values": [SLOW, FAST, BAD]},
        design={"pruning": {"enabled": True}},
        parallelism=9,
    )  # fmt: skip


def _names() -> dict[tuple[int, float], str]:
    """(data size, rate) -> the trial's name (names are deterministic: the plan's)."""
    return {(d, r): trial_name(STUDY, d, 4, 0, r) for d in (100, 200, 400)
            for r in (SLOW, FAST, BAD)}  # fmt: skip


def _running_pod(cluster: Cluster, namespace: str, trial: str) -> str | None:
    for pod in cluster.items("pods", namespace, f"scalingstudy.io/trial={trial}"):
        if (pod.get("status") or {}).get("phase") == "Running":
            return str(pod["metadata"]["name"])
    return None


def _forge(cluster: Cluster, namespace: str, trial: str) -> None:
    """A curve pushed for a running trial by someone who can reach the Pushgateway (with
    the SDK's own code, so it looks exactly like the trial's): a terrible loss at the
    trial's first evaluation step."""
    env = {"SCALINGSTUDY_NAMESPACE": namespace, "SCALINGSTUDY_STUDY": STUDY,
           "SCALINGSTUDY_TRIAL": trial, "SCALINGSTUDY_DATA_SIZE": "100",
           "SCALINGSTUDY_MODEL_SIZE": "4", "SCALINGSTUDY_SEED": "0"}  # fmt: skip
    url = group_url(cluster.env["PUSHGATEWAY_URL"], PROGRESS_PUSH_JOB, env)
    put_group(url, exposition({"steps": 10, "validation_loss": 99.0}, env, "Latest"), 10)


def _mismatches(op: Operator, namespace: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{op.metrics_port}/metrics").text
    for line in text.splitlines():
        if (line.startswith("scalingstudy_result_mismatches_total{")
                and f'namespace="{namespace}"' in line):  # fmt: skip
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return cluster.get("scalingstudy", STUDY, namespace).get("status") or {}


def _pruned(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    rows = _status(cluster, namespace).get("results") or []
    return {r["trial"]: r for r in rows if r.get("status") == "Pruned"}


def _job_writes(cluster: Cluster, namespace: str) -> dict[str, collections.Counter[str]]:
    """Per verb, the successful writes to each Job of the namespace (the audit log)."""
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for e in audit_events(cluster.dir):
        ref = e.get("objectRef") or {}
        code = (e.get("responseStatus") or {}).get("code") or 0
        if ref.get("resource") == "jobs" and ref.get("namespace") == namespace and code < 300:
            out[str(e.get("verb"))][str(ref.get("name"))] += 1
    return out


def _live_curve(cluster: Cluster, namespace: str, trial: str, since: float) -> list[float]:
    """The trial's pushed validation loss over time, from the real Prometheus."""
    query = (f'scalingstudy_trial_validation_loss{{job="scalingstudy-progress",'
             f'namespace="{namespace}",trial="{trial}"}}')  # fmt: skip
    params = {"query": query, "start": since, "end": time.time(), "step": 1}
    r = httpx.get(f"{cluster.env['PROMETHEUS_URL']}/api/v1/query_range", params=params)
    series = r.json()["data"]["result"]
    values = [float(v) for s in series for _, v in s["values"]]
    return list(dict.fromkeys(values))  # distinct, in time order


@pytest.mark.slow(75)
def test_pruning_on_the_cluster_from_the_pods_own_logs(
    cluster: Cluster, namespace: str, operator_factory: Any, tmp_path: Path
) -> None:
    started = time.time()
    op: Operator = operator_factory(namespace, extra=["--sweep-interval=3"])
    op.start()
    names = _names()
    # The slow starter of the smallest data size pushes no progress of its own: the
    # Pushgateway holds only the forger's curve for it.
    assert cluster.apply(_spec(names[(100, SLOW)]), namespace).returncode == 0
    # 1. kubectl logs of a running trial pod: its JSON evaluation lines, via the API server.
    pod = wait_until("a running pod of the fast starter",
                     lambda: _running_pod(cluster, namespace, names[(100, FAST)]))  # fmt: skip
    logs = wait_until("evaluations in kubectl logs", lambda: (
        out if len(read_curve((out := cluster.kubectl("logs", pod, "-n", namespace).stdout)
                              .splitlines()).points) >= 2 else None))  # fmt: skip
    assert '"event": "eval"' in logs
    _forge(cluster, namespace, names[(100, SLOW)])
    wait_until("the forged curve counted", lambda: _mismatches(op, namespace) >= 1, timeout=60)
    bad = {names[(d, BAD)] for d in (100, 200, 400)}
    # The Event is written after the status that records the trials: wait for both, or
    # the kill below can land between them (Events are at most once, like client-go's).
    wait_until(
        "the clearly worse trials pruned and said",
        lambda: bad <= set(_pruned(cluster, namespace)) and bad <= _said_pruned(cluster, namespace),
        timeout=90,
    )
    op.kill()  # mid-study: the slow and fast starters still run
    # As if the operator had died right after writing a decision on a Job: the next one
    # records the trial from the Job alone, deletes it, and never starts it again.
    by_hand = names[(400, FAST)]
    assert by_hand not in _pruned(cluster, namespace)
    mark = PruneMark(50, "pruned by hand", 7.5, ((10.0, 1.5), (50.0, 1.0)))
    cluster.kubectl("annotate", "job", by_hand, "-n", namespace,
                    f"{PRUNED_ANNOTATION}={mark.to_annotation()}")  # fmt: skip
    op.start()
    wait_until("the study to finish", lambda: _status(cluster, namespace).get("phase")
               in ("Succeeded", "Failed"), timeout=150)  # fmt: skip
    _check_outcome(cluster, namespace, names, bad)
    _check_curves_csv(cluster, namespace, names, bad, tmp_path)
    live = _live_curve(cluster, namespace, names[(200, FAST)], started)
    assert len(live) >= 2 and live == sorted(live, reverse=True), live
    # Recorded trials are not running: their live progress leaves the Pushgateway (the
    # forged group too); Prometheus keeps the history read above.
    wait_until("no progress group left", lambda: not _progress_groups(cluster, namespace),
               timeout=30)  # fmt: skip
    # A push that lands after its trial was recorded (a pruned trial's trainer flushes its
    # last evaluation as its Job is deleted) is swept too: the panel shows running trials.
    _forge(cluster, namespace, names[(100, SLOW)])
    assert _progress_groups(cluster, namespace)
    wait_until("the late push swept", lambda: not _progress_groups(cluster, namespace),
               timeout=30)  # fmt: skip


def _said_pruned(cluster: Cluster, namespace: str) -> set[str]:
    """The trials a TrialsPruned Event names with where they stopped."""
    messages = [e["message"] for e in cluster.items("events", namespace)
                if e["reason"] == "TrialsPruned"]  # fmt: skip
    return {t for t in _names().values() if any(f"{t} at step" in m for m in messages)}


def _progress_groups(cluster: Cluster, namespace: str) -> list[dict[str, str]]:
    groups = httpx.get(f"{cluster.env['PUSHGATEWAY_URL']}/api/v1/metrics").json()["data"]
    return [g["labels"] for g in groups if g["labels"].get("job") == PROGRESS_PUSH_JOB
            and g["labels"].get("namespace") == namespace]  # fmt: skip


def _check_outcome(
    cluster: Cluster, namespace: str, names: dict[tuple[int, float], str], bad: set[str]
) -> None:
    status = _status(cluster, namespace)
    assert status["phase"] == "Succeeded", status.get("conditions")
    rows = {r["trial"]: r for r in status["results"]}
    hand = rows[names[(400, FAST)]]
    assert (hand["status"], hand["message"], hand["prunedAtStep"]) == (
        "Pruned", "pruned by hand", 50)  # fmt: skip
    assert hand["curve"] == [[10, 1.5], [50, 1.0]]
    for d in (100, 200, 400):
        # The slow starter wins its slot (forged curve or not); the clearly worse rate
        # stopped early, its best loss so far above the winner's.
        slow, r = rows[names[(d, SLOW)]], rows[names[(d, BAD)]]
        assert slow["status"] == "Succeeded", slow
        assert r["status"] == "Pruned" and r["reason"] == "Pruned", r
        assert r["bestLoss"] > slow["loss"] and 0 < r["prunedAtStep"] < 400 and "loss" not in r
        assert 3 <= len(r["curve"]) <= 24 and r["curve"][-1][0] == r["prunedAtStep"]
    assert status["trials"]["failed"] == 0
    # Each pruned trial: one Job, annotated once, deleted; never made again.
    writes = _job_writes(cluster, namespace)
    assert all(n == 1 for n in writes["create"].values()), writes["create"]
    assert {t: writes["patch"][t] for t in bad} == dict.fromkeys(bad, 1)
    assert all(writes["delete"][t] >= 1 for t in [*bad, names[(400, FAST)]])
    events = cluster.items("events", namespace)
    pruned_msgs = [e["message"] for e in events if e["reason"] == "TrialsPruned"]
    for trial in [*bad, names[(400, FAST)]]:  # in one TrialsPruned Event across both
        assert sum(f"{trial} at step" in m for m in pruned_msgs) == 1, pruned_msgs
    forged = [e for e in events if e["reason"] == "ResultMismatch"]
    assert any(names[(100, SLOW)] in e["message"] for e in forged), forged
    # One forged sample, read pass after pass: counted once by each operator process (the
    # test restarts it once), in one Event each.
    pushed = [e for e in forged if "pushed evaluation(s)" in e["message"]]
    assert 1 <= sum(e.get("count") or 1 for e in pushed) <= 2, pushed
    assert all(e["message"].startswith("1 pushed evaluation(s)") for e in pushed), pushed


def _check_curves_csv(
    cluster: Cluster, namespace: str, names: dict[tuple[int, float], str], bad: set[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    out = tmp_path / "got"
    done = subprocess.run(
        [sys.executable, "-m", "scalingstudy.cli", "get", STUDY, "-n", namespace,
         f"--out={out}", f"--kubeconfig={cluster.env['KUBECONFIG']}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with (out / "curves.csv").open() as f:
        rows = list(csv.DictReader(f))
    by_trial: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    for row in rows:
        by_trial[row["trial"]].append(row)
    assert set(by_trial) == set(names.values())  # no curve lost, restart or not
    for trial in bad:
        assert {r["status"] for r in by_trial[trial]} == {"Pruned"}
        assert len(by_trial[trial]) >= 3
    slow = by_trial[names[(100, SLOW)]]
    assert len(slow) == 40 and {r["status"] for r in slow} == {"Succeeded"}
    losses = [float(r["validation_loss"]) for r in slow]
    assert losses == sorted(losses, reverse=True) and losses[0] < 99  # the log, not forged
    report = (out / "report.html").read_text()  # the same curves drawn, pruned ones marked
    assert "<h2 id=curves>Training curves</h2>" in report and "pruned" in report


def test_a_log_its_node_cannot_serve_is_unknown_not_an_error(
    cluster: Cluster, namespace: str
) -> None:
    """A pod on a node whose kubelet does not answer (a real refused connection, made by
    a Node whose log port nothing listens on): its curve is unknown this time, and the
    operator's pass (which reads logs to prune) goes on."""
    port = free_port()  # picked, never bound
    node = f"ghost-{namespace}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}))  # fmt: skip
    try:
        status = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                             "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}  # fmt: skip
        cluster.kubectl("patch", "node", node, "--subresource=status", "--type=merge",
                        "-p", json.dumps(status))  # fmt: skip
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "far"},
            "spec": {"nodeName": node, "containers": [{"name": "trainer", "image": "x"}]},
        }
        assert cluster.apply(pod, namespace).returncode == 0
        refused = cluster.kubectl("logs", "far", "-n", namespace, check=False)
        assert refused.returncode != 0 and "refused" in refused.stderr, refused.stderr
        kube = Kube(load_config(cluster.env["KUBECONFIG"]), user_agent="test")
        assert PodLogs(kube).curve(namespace, "far") is None
    finally:
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)
