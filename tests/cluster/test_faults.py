"""No study stuck without a reason: faults the cluster really produces, surfaced in the
study's status and Events, on the real control plane."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import Cluster, Operator, study_doc, wait_until
from tests.cluster.test_operator import events, finished, job_creations, phase_is


def small(name: str, **spec: Any) -> dict[str, Any]:
    return study_doc(name, dataSizes={"values": [100, 200, 400]}, modelSizes={"values": [4]},
                     **spec)  # fmt: skip


def condition(cluster: Cluster, name: str, ns: str, kind: str) -> dict[str, Any] | None:
    status = cluster.get("scalingstudy", name, ns).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == kind), None)


def blocked_condition(cluster: Cluster, name: str, ns: str, timeout: float) -> dict[str, Any]:
    """The study's TrialsBlocked condition once it is True."""
    found: dict[str, Any] = wait_until(
        f"{name}: TrialsBlocked",
        lambda: (c := condition(cluster, name, ns, "TrialsBlocked")) and c["status"] == "True"
        and c,
        timeout=timeout,
    )  # fmt: skip
    return found


def passes(op: Operator) -> float:
    """The operator's reconcile passes so far, from its own /metrics."""
    text = httpx.get(f"http://127.0.0.1:{op.metrics_port}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("scalingstudy_reconcile_total{"))  # fmt: skip


def test_pods_that_cannot_be_created_block_the_study_visibly_until_the_cause_goes(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace, extra=["--blocked-after=5"])
    op.start()
    doc = small("no-account")
    doc["spec"]["trainer"]["serviceAccountName"] = "trainer"  # does not exist yet
    assert cluster.apply(doc, namespace).returncode == 0
    blocked = blocked_condition(cluster, "no-account", namespace, timeout=90)
    assert blocked["reason"] == "PodsNotCreated"
    assert 'serviceaccount "trainer" not found' in blocked["message"], blocked
    warnings = [e for e in events(cluster, namespace, "no-account") if e["type"] == "Warning"]
    assert any(e["reason"] == "TrialsBlocked" for e in warnings)
    metrics = httpx.get(f"http://127.0.0.1:{op.metrics_port}/metrics").text
    gauge = f'scalingstudy_trials_blocked{{namespace="{namespace}",study="no-account"}}'
    (line,) = [row for row in metrics.splitlines() if row.startswith(gauge)]
    assert float(line.split()[-1]) >= 1
    cluster.kubectl("create", "serviceaccount", "trainer", "-n", namespace)
    done = finished(cluster, "no-account", namespace, timeout=240)
    assert done["phase"] == "Succeeded"
    assert condition(cluster, "no-account", namespace, "TrialsBlocked")["status"] == "False"  # type: ignore[index]


def test_a_job_the_api_server_refuses_fails_the_study_with_its_message(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    doc = small("refused")
    # Valid for the schema, refused by the API server's Job validation.
    doc["spec"]["trainer"]["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    assert cluster.apply(doc, namespace).returncode == 0
    status = wait_until(
        "the refusal", lambda: phase_is(cluster, "refused", namespace, "Failed"), timeout=60
    )["status"]
    valid = next(c for c in status["conditions"] if c["type"] == "SpecValid")
    assert (
        valid["status"] == "False" and "must be less than or equal to cpu limit" in valid["message"]
    )
    assert not cluster.items("jobs", namespace, "scalingstudy.io/study=refused")
    reasons = [e["reason"] for e in events(cluster, namespace, "refused")]
    assert reasons.count("JobRejected") == 1  # refused once, not retried every pass
    assert "TrialsStarted" not in reasons  # no Job was created, none is said to have started
    # Any spec change tries again (here: a fixed one runs).
    doc["spec"]["trainer"]["resources"] = {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    assert cluster.apply(doc, namespace).returncode == 0
    fixed = wait_until(
        "the fixed study to finish",
        lambda: phase_is(cluster, "refused", namespace, "Succeeded"),
        timeout=120,
    )
    assert fixed["status"]["trials"]["succeeded"] == 3


class _Garbage(http.server.BaseHTTPRequestHandler):
    """A Prometheus that answers valid JSON of the wrong shape."""

    answers = (b'{"status": "success", "data": {"result": "notalist"}}', b"[1, 2]")

    def do_POST(self) -> None:
        body = self.answers[self.server.calls % 2]  # type: ignore[attr-defined]
        self.server.calls += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def garbage_prometheus() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    server.calls = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_prometheus_answering_nonsense_costs_nothing(
    cluster: Cluster, namespace: str, operator_factory: Any, garbage_prometheus: str
) -> None:
    op: Operator = operator_factory(namespace, extra=[f"--prometheus-url={garbage_prometheus}"])
    op.start()
    assert cluster.apply(small("nonsense"), namespace).returncode == 0
    done = finished(cluster, "nonsense", namespace, timeout=120)
    assert done["phase"] == "Succeeded" and len(done["results"]) == 3
    assert {r["source"] for r in done["results"]} == {"termination-message"}
    assert httpx.get(f"http://127.0.0.1:{op.metrics_port}/healthz").status_code == 200
    errors = [
        line for line in httpx.get(f"http://127.0.0.1:{op.metrics_port}/metrics").text.splitlines()
        if line.startswith('scalingstudy_reconcile_total{result="error"}')
    ]  # fmt: skip
    assert not errors or float(errors[0].split()[-1]) == 0, errors
    assert json.dumps(done)  # the status is plain JSON


def test_trials_read_their_settings_from_the_studys_config_map_and_a_foreign_one_is_kept(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    # The study's own ConfigMap: created before its first Job, owned by it, mounted.
    assert cluster.apply(small("own-config"), namespace).returncode == 0
    assert finished(cluster, "own-config", namespace)["phase"] == "Succeeded"
    cm = cluster.get("configmap", "own-config-trial-config", namespace)
    study_uid = cluster.get("scalingstudy", "own-config", namespace)["metadata"]["uid"]
    assert cm["metadata"]["ownerReferences"][0]["uid"] == study_uid
    assert json.loads(cm["data"]["task.json"])["name"] == "teacher-student"
    # A ConfigMap of that name that is not a study's is never overwritten.
    foreign = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "clash-trial-config"}, "data": {"keep": "me"},
    }  # fmt: skip
    assert cluster.apply(foreign, namespace).returncode == 0
    assert cluster.apply(small("clash"), namespace).returncode == 0
    # Not a spec problem: the study is blocked under its own reason, not Failed...
    blocked = blocked_condition(cluster, "clash", namespace, timeout=60)
    assert (
        blocked["reason"] == "ConfigMapConflict"
        and "clash-trial-config exists" in (blocked["message"])
    )
    assert condition(cluster, "clash", namespace, "SpecValid")["status"] == "True"  # type: ignore[index]
    assert not cluster.items("jobs", namespace, "scalingstudy.io/study=clash")
    assert cluster.get("configmap", "clash-trial-config", namespace)["data"] == {"keep": "me"}
    assert "ConfigMapConflict" in [e["reason"] for e in events(cluster, namespace, "clash")]
    # ...and runs, with no spec change, once the foreign object is gone.
    generation = cluster.get("scalingstudy", "clash", namespace)["metadata"]["generation"]
    cluster.kubectl("delete", "configmap", "clash-trial-config", "-n", namespace)
    done = finished(cluster, "clash", namespace, timeout=120)
    assert done["phase"] == "Succeeded" and done["observedGeneration"] == generation
    assert condition(cluster, "clash", namespace, "TrialsBlocked")["status"] == "False"  # type: ignore[index]


@pytest.mark.slow(30)
def test_a_refused_study_still_records_what_its_running_jobs_finish(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    """A spec the operator refuses mid-run (here: a priority class it does not allow)
    starts nothing more, but the trial already running is recorded when it ends; allowed
    again, the study goes on from there."""
    op: Operator = operator_factory(namespace)
    op.start()
    doc = small("held", parallelism=1)
    doc["spec"]["trainer"]["env"].append({"name": "TRIAL_SECONDS", "value": "6"})
    assert cluster.apply(doc, namespace).returncode == 0
    wait_until("the first Job", lambda: cluster.items(
        "jobs", namespace, "scalingstudy.io/study=held"), timeout=60)  # fmt: skip
    doc["spec"]["trainer"]["priorityClassName"] = "system-node-critical"
    assert cluster.apply(doc, namespace).returncode == 0
    refused = wait_until(
        "the refusal", lambda: (c := condition(cluster, "held", namespace, "Failed"))
        and c["reason"] == "Forbidden" and c, timeout=60,
    )  # fmt: skip
    assert "priorityClassName" in refused["message"]
    recorded = wait_until(
        "the running trial's result",
        lambda: cluster.get("scalingstudy", "held", namespace)["status"].get("results"),
        timeout=60,
    )
    assert len(recorded) == 1 and recorded[0]["status"] == "Succeeded"
    assert len(cluster.items("jobs", namespace, "scalingstudy.io/study=held")) == 1
    del doc["spec"]["trainer"]["priorityClassName"]
    assert cluster.apply(doc, namespace).returncode == 0
    done = wait_until("the allowed study to finish",
                      lambda: phase_is(cluster, "held", namespace, "Succeeded"),
                      timeout=120)["status"]  # fmt: skip
    assert len(done["results"]) == 3 and done["results"][0] == recorded[0]
    reasons = [e["reason"] for e in events(cluster, namespace, "held")]
    assert reasons.count("Forbidden") == 1


def test_a_status_too_large_fails_the_study_and_creates_no_job(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    """The size guard (issue 26 E): a pass whose status would be too large writes the
    study Failed (StatusTooLarge) and starts nothing; its counts say no Job runs. The
    limit is lowered by the operator's flag, as for an etcd with a smaller request limit."""
    op: Operator = operator_factory(namespace, extra=["--max-status-bytes=600"])
    op.start()
    assert cluster.apply(small("toolarge"), namespace).returncode == 0
    status = wait_until(
        "the size guard", lambda: phase_is(cluster, "toolarge", namespace, "Failed"), timeout=60
    )["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "StatusTooLarge" and "above the 600" in failed["message"]
    assert "fit" not in status
    assert status["trials"]["running"] == 0 and status["trials"]["pending"] == 3
    first = passes(op)
    wait_until("two more passes (resync 5 s)", lambda: passes(op) >= first + 2, timeout=30)
    assert not cluster.items("jobs", namespace, "scalingstudy.io/study=toolarge")
    assert not job_creations(cluster, namespace)
    reasons = [e["reason"] for e in events(cluster, namespace, "toolarge")]
    assert "TrialsStarted" not in reasons and "StudyFailed" in reasons
