"""The operator end to end on the real control plane: Jobs, trainers, Pushgateway,
Prometheus, status, Events, restarts (issue 5)."""

from __future__ import annotations

import collections
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import render
from tests.cluster.chart_operator import chart_operator, job_creators
from tests.cluster.conftest import ROOT, Cluster, Operator, study_doc, wait_until
from tests.harness.cluster import audit_events


def study(c: Cluster, name: str, ns: str) -> dict[str, Any]:
    obj: dict[str, Any] = c.get("scalingstudy", name, ns)
    return obj


def phase_is(c: Cluster, name: str, ns: str, *phases: str) -> dict[str, Any] | None:
    obj = study(c, name, ns)
    return obj if obj.get("status", {}).get("phase") in phases else None


def finished(c: Cluster, name: str, ns: str, timeout: float = 240) -> dict[str, Any]:
    """The status once the study is Succeeded or Failed."""
    done = wait_until(
        f"{name} to finish", lambda: phase_is(c, name, ns, "Succeeded", "Failed"), timeout=timeout
    )
    return dict(done["status"])


def results_at_least(c: Cluster, name: str, ns: str, n: int, timeout: float = 120) -> None:
    def enough() -> bool:
        return len((study(c, name, ns).get("status") or {}).get("results", [])) >= n

    wait_until(f"{n} results of {name}", enough, timeout=timeout)


def events(c: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    return [
        e for e in c.items("events", ns) if e["involvedObject"].get("kind") == "ScalingStudy"
        and e["involvedObject"]["name"] == name
    ]  # fmt: skip


def kill_at_random_moments(
    op: Operator, rng: random.Random, times: int, up: tuple[float, float]
) -> None:
    """SIGKILL the operator ``times`` times, each after it ran for a random time in ``up``
    seconds, restarting it after up to a second."""
    for _ in range(times):
        time.sleep(rng.uniform(*up))
        op.kill()
        time.sleep(rng.uniform(0.0, 1.0))
        op.start()


def job_creations(c: Cluster, ns: str, *, unanswered: bool = False) -> collections.Counter[str]:
    """Successful Job creates in the namespace, from the API server's audit log. With
    ``unanswered``, also the creates the server could not answer with a status: an
    operator SIGKILLed mid-request cancels it, and etcd may have stored the Job anyway
    (seen once: a trial recorded whose only create was not logged as 201)."""
    made: collections.Counter[str] = collections.Counter()
    for e in audit_events(c.dir):
        ref = e.get("objectRef") or {}
        code = (e.get("responseStatus") or {}).get("code")
        if (
            e.get("verb") == "create"
            and ref.get("resource") == "jobs"
            and ref.get("namespace") == ns
            and (code == 201 or (unanswered and (not code or code >= 500)))
        ):
            made[ref.get("name", "")] += 1
    return made


@pytest.mark.slow(200)
def test_quickstart_example_end_to_end(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """The example file under the operator the chart installs (issue 40): its pod run
    in-cluster on the chart's service account and RBAC alone (any 403 in its log fails),
    the built-in trainer as the pods' process, results through the real Pushgateway and
    Prometheus, a fitted negative exponent with its interval."""
    with chart_operator(cluster, [namespace], log_dir=tmp_path) as op:
        out = cluster.kubectl(
            "apply", "-n", namespace, "-f", str(ROOT / "examples" / "quickstart-k8s.yaml")
        )
        assert "created" in out.stdout
        done = wait_until(
            "the quickstart study to finish",
            lambda: phase_is(cluster, "quickstart-k8s", namespace, "Succeeded", "Failed"),
            timeout=600,
            every=2,
        )
        quickstart_succeeded(cluster, namespace, done, op.metrics_port)
        assert op.refusals() == []
        # Every Job was created by the chart's service account, with a token bound to the
        # operator's pod (the API server's audit log names both).
        sa = f"system:serviceaccount:{op.namespace}:{op.release}"
        creators = job_creators(cluster, namespace)
        assert creators == {(sa, op.ready_pod()["metadata"]["name"])}, creators
    looks_like_a_local_run(cluster, namespace, done["status"], tmp_path / "got")


def quickstart_succeeded(
    cluster: Cluster, namespace: str, done: dict[str, Any], metrics_port: int
) -> None:
    """What the finished quickstart shows: counts, fit, results, columns, Events, metrics."""
    status = done["status"]
    assert status["phase"] == "Succeeded", status.get("conditions")
    assert status["trials"] == {
        "total": 63,
        "pending": 0,
        "queued": 0,
        "running": 0,
        "succeeded": 63,
        "failed": 0,
        "pruned": 0,
    }
    assert status["progress"] == "63/63"
    assert status["observedGeneration"] == done["metadata"]["generation"]
    lc = status["fit"]["learningCurve"]
    assert status["fit"]["final"] is True
    assert lc["beta"] < 0 and lc["betaInterval"][0] <= lc["beta"] <= lc["betaInterval"][1]
    # The best width grows with the data inside the grid: beta_p is measured, with an
    # interval bounded on both sides (the quickstart shows both laws of the paper).
    size = status["fit"]["modelSize"]
    assert size.get("beta") is not None and None not in size["betaInterval"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Complete"] == "True" and conditions["Failed"] == "False"
    # Each result is the pod's own termination message; the copy that went through the
    # Pushgateway and Prometheus was checked against it and agreed (forgeries: test_trust).
    sources = collections.Counter((r["source"], r["verified"]) for r in status["results"])
    assert sources == {("termination-message", True): 63}, sources
    assert all(r["loss"] > 0 and r["parameters"] > 0 for r in status["results"])
    # Recorded groups were deleted from the Pushgateway (this namespace's: the machine is
    # shared, and another run's groups of a study of this name were seen here once).
    groups = httpx.get(f"{cluster.env['PUSHGATEWAY_URL']}/api/v1/metrics").json()["data"]
    ours = [g["labels"] for g in groups if g["labels"].get("namespace") == namespace]
    assert not [g for g in ours if g.get("study") == "quickstart-k8s"], ours
    # `kubectl get scalingstudies` columns are filled.
    header, line = cluster.kubectl("get", "scalingstudies", "-n", namespace).stdout.splitlines()[:2]
    row = line.split()
    assert row[:3] == ["quickstart-k8s", "Succeeded", "63/63"]
    cells = dict(zip(header.split(), row, strict=False))
    assert (cells["RUNNING"], cells["QUEUED"]) == ("0", "0")
    assert float(cells["BETAG"]) == lc["beta"]
    # Every column is filled: beta_p is measured (and the example has a budget: SPEND).
    assert len(row) == len(header.split())
    assert float(cells["BETAP"]) == pytest.approx(status["fit"]["modelSize"]["beta"], rel=1e-3)
    assert cells["SPEND"].endswith("%")
    reasons = {e["reason"] for e in events(cluster, namespace, "quickstart-k8s")}
    assert {"TrialsStarted", "TrialsSucceeded", "FitUpdated", "StudySucceeded"} <= reasons
    assert "ResultMismatch" not in reasons
    # The operator exports the fit and its own health.
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert f'scalingstudy_fit_beta_g{{namespace="{namespace}",study="quickstart-k8s"}}' in metrics
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/healthz").status_code == 200


def looks_like_a_local_run(c: Cluster, ns: str, status: dict[str, Any], out: Path) -> None:
    """`scalingstudy get` writes the files `scalingstudy run` writes, from the status: the
    same results, the same fit, a report that a real browser renders (issue 27)."""
    env = {**os.environ, "KUBECONFIG": c.env["KUBECONFIG"]}
    got = subprocess.run(
        [sys.executable, "-m", "scalingstudy.cli", "get", "quickstart-k8s", "-n", ns,
         "--out", str(out)], env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 63 and {r["trial"] for r in rows} == {r["trial"] for r in status["results"]}
    # The same fit as the operator's (status rounds to 4 significant digits).
    beta = json.loads((out / "fit.json").read_text())["learning_curve"]["beta"]
    assert f"{beta:.4g}" == f"{status['fit']['learningCurve']['beta']:.4g}"
    page = render(out / "report.html")
    assert page.problems == [] and page.image_widths["plot"] > 500
    assert f"{beta:.4f}" in page.text and f"cluster study {ns}/quickstart-k8s" in page.text
    missing = subprocess.run(
        [sys.executable, "-m", "scalingstudy.cli", "get", "nosuch", "-n", ns, "--out",
         str(out / "x")], env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "'nosuch' not found in namespace" in missing.stderr
    assert not (out / "x").exists()


def test_trial_jobs_have_the_promised_shape(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    doc = study_doc("shape", parallelism=1, dataSizes={"values": [100, 200, 400]},
                    modelSizes={"values": [4]})  # fmt: skip
    doc["spec"]["trainer"].update(
        resources={"limits": {"nvidia.com/gpu": "1", "memory": "1Gi"}},
        nodeSelector={"kubernetes.io/hostname": "scalingstudy-test-node"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    cluster.apply(doc, namespace)
    (job,) = wait_until("the first Job", lambda: cluster.items("jobs", namespace), timeout=60)
    uid = study(cluster, "shape", namespace)["metadata"]["uid"]
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == "shape-d100-m4-s0"
    assert meta["labels"]["scalingstudy.io/study"] == "shape"
    assert meta["labels"]["scalingstudy.io/data-size"] == "100"
    (owner,) = meta["ownerReferences"]
    assert owner["uid"] == uid and owner["controller"] is True
    assert spec["backoffLimit"] == 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert rules[1]["action"] == "FailJob" and rules[1]["onExitCodes"]["values"] == [78]
    container = spec["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SCALINGSTUDY_RESULT_FILE"] == container["terminationMessagePath"]
    assert env["SCALINGSTUDY_PUSHGATEWAY"] == cluster.env["PUSHGATEWAY_URL"]
    assert spec["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.slow(40)
def test_sigkill_at_random_moments_creates_no_duplicate_and_loses_nothing(
    cluster: Cluster, namespace: str, operator_factory: Any, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    # The trainer log below is a hostPath volume: only a trusted namespace may have one.
    op: Operator = operator_factory(namespace, extra=[f"--trusted-namespaces={namespace}"])
    op.start()
    doc = study_doc(
        "restarts",
        dataSizes={"values": [100, 200, 400, 800, 1600]},
        modelSizes={"values": [2, 4, 8, 16]},
        parallelism=4,
    )
    # Every trainer start is logged to a hostPath volume (pods' /tmp is their own).
    doc["spec"]["trainer"]["volumes"] = [{"name": "calls", "hostPath": {"path": str(tmp_path)}}]
    doc["spec"]["trainer"]["volumeMounts"] = [{"name": "calls", "mountPath": "/calls"}]
    doc["spec"]["trainer"]["env"] += [
        {"name": "CALLS_LOG", "value": "/calls/calls.log"},
        {"name": "TRIAL_SECONDS", "value": "1"},
    ]
    cluster.apply(doc, namespace)
    kill_at_random_moments(op, random.Random(20261124), 10, up=(0.3, 3.0))
    assert op.starts == 11
    done = wait_until(
        "the study to finish",
        lambda: phase_is(cluster, "restarts", namespace, "Succeeded", "Failed"),
        timeout=300,
    )
    status = done["status"]
    assert status["phase"] == "Succeeded", status.get("conditions")
    names = sorted(r["trial"] for r in status["results"])
    assert len(names) == 20 and len(set(names)) == 20
    creations = job_creations(cluster, namespace)
    assert len(creations) == 20 and set(creations.values()) == {1}, creations
    started = collections.Counter(calls.read_text().split())
    assert set(started) == set(names) and set(started.values()) == {1}, started


def test_results_come_from_termination_messages_when_prometheus_is_down(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    cluster.prometheus_down()
    try:
        op: Operator = operator_factory(namespace)
        op.start()
        cluster.apply(study_doc("noprom"), namespace)
        done = wait_until(
            "the study to finish",
            lambda: phase_is(cluster, "noprom", namespace, "Succeeded", "Failed"),
            timeout=240,
        )
    finally:
        cluster.prometheus_up()
    status = done["status"]
    assert status["phase"] == "Succeeded"
    assert len(status["results"]) == 10
    assert {r["source"] for r in status["results"]} == {"termination-message"}
    assert status["fit"]["learningCurve"]["beta"] < 0


def test_failing_study_fails_with_reason_and_neighbour_is_unaffected(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    broken = study_doc("broken", maxFailedTrials=2, parallelism=2)
    broken["spec"]["trainer"]["env"].append({"name": "FAIL_TRIALS", "value": "*"})
    healthy = study_doc("healthy")
    # Passes the schema, fails full validation: reported in status, touches nothing else.
    invalid = study_doc("unmounted")
    invalid["spec"]["trainer"]["volumeMounts"] = [{"name": "nowhere", "mountPath": "/data"}]
    for doc in (broken, healthy, invalid):
        assert cluster.apply(doc, namespace).returncode == 0
    failed = wait_until(
        "the broken study to fail",
        lambda: phase_is(cluster, "broken", namespace, "Failed", "Succeeded"),
        timeout=180,
    )["status"]
    assert failed["phase"] == "Failed"
    cond = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert cond["status"] == "True" and cond["reason"] == "TooManyFailedTrials"
    assert "trials failed (maxFailedTrials is 2)" in cond["message"]
    assert "ExitCode3" in cond["message"]
    assert all(r["status"] == "Failed" and r["reason"] == "ExitCode3" for r in failed["results"])
    assert "CUDA out of memory" in failed["results"][0]["message"]
    ok = wait_until(
        "the healthy study to finish",
        lambda: phase_is(cluster, "healthy", namespace, "Succeeded", "Failed"),
        timeout=240,
    )["status"]
    assert ok["phase"] == "Succeeded" and ok["trials"]["succeeded"] == 10
    bad_spec = wait_until(
        "the invalid study's status",
        lambda: phase_is(cluster, "unmounted", namespace, "Failed"),
        timeout=60,
    )["status"]
    spec_cond = next(c for c in bad_spec["conditions"] if c["type"] == "SpecValid")
    assert spec_cond["status"] == "False" and "nowhere" in spec_cond["message"]
    assert not cluster.items("jobs", namespace, "scalingstudy.io/study=unmounted")
    # The broken study stopped creating Jobs once it failed.
    assert len(cluster.items("jobs", namespace, "scalingstudy.io/study=broken")) <= 4
    assert op.alive()
    reasons = {e["reason"] for e in events(cluster, namespace, "broken")}
    assert {"TrialFailed", "StudyFailed"} <= reasons


def test_growing_the_grid_adds_trials_and_keeps_results(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    doc = study_doc("grow", dataSizes={"values": [100, 200, 400, 800]},
                    modelSizes={"values": [4]},
                    fit={"bootstrap": 50, "targetLoss": 0.01, "form": "power-law-plus-constant"},
                    )  # fmt: skip
    cluster.apply(doc, namespace)
    first = wait_until(
        "4 trials", lambda: phase_is(cluster, "grow", namespace, "Succeeded"), timeout=120
    )
    before = {r["trial"]: r for r in first["status"]["results"]}
    assert first["status"]["fit"]["dataForTarget"]["targetLoss"] == 0.01
    assert first["status"]["fit"]["learningCurve"]["gammaInterval"]
    # A fit setting of the finished study changes alone (issue 37): once observedGeneration
    # says the status reflects the new spec, the fit must be that spec's.
    cluster.kubectl("patch", "scalingstudy", "grow", "-n", namespace, "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/fit/targetLoss"}]')  # fmt: skip

    def observed() -> dict[str, Any] | None:
        obj = study(cluster, "grow", namespace)
        seen = (obj.get("status") or {}).get("observedGeneration")
        return obj if seen == obj["metadata"]["generation"] else None

    untargeted = wait_until("the new generation observed", observed, timeout=60)["status"]
    assert "dataForTarget" not in (untargeted.get("fit") or {}), untargeted.get("fit")
    doc["spec"]["fit"].pop("targetLoss")
    doc["spec"]["dataSizes"]["values"] += [1600]
    # The constant goes with the grid's change: the refit must not keep its answers (a
    # merge patch of the new status alone used to leave them in place).
    doc["spec"]["fit"]["form"] = "power-law"
    cluster.apply(doc, namespace)

    def regrown() -> dict[str, Any] | None:
        obj = phase_is(cluster, "grow", namespace, "Succeeded")
        if obj and obj["status"]["observedGeneration"] == obj["metadata"]["generation"]:
            return obj if obj["status"]["trials"]["total"] == 5 else None
        return None

    after = wait_until("the grown study", regrown, timeout=120)["status"]
    assert after["progress"] == "5/5"
    assert after["fit"]["basedOnResults"] == 5 and "dataForTarget" not in after["fit"]
    assert after["fit"]["learningCurve"]["form"] == "power-law"
    assert "gammaInterval" not in after["fit"]["learningCurve"]
    assert {r["trial"]: r for r in after["results"] if r["trial"] in before} == before
    assert sum(job_creations(cluster, namespace).values()) == 5
