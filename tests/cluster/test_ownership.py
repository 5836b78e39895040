"""Whose is what, on the real control plane (issues 37 and 42): status writes land only on
the study the pass read, a Job name held by another owner blocks its trial visibly, and a
create the API server refuses (a ResourceQuota) is a condition, not a crash loop."""

from __future__ import annotations

from typing import Any

import httpx

from scalingstudy.cluster.kube import Kube, load_config
from scalingstudy.planning.plan import Plan
from scalingstudy.spec import parse_spec
from tests.cluster.conftest import Cluster, Operator, study_doc, wait_until
from tests.cluster.test_faults import blocked_condition, small
from tests.cluster.test_operator import events, phase_is


def test_a_status_write_lands_only_on_the_study_it_was_read_from(
    cluster: Cluster, namespace: str
) -> None:
    """A pass of a deleted study used to merge-patch the status by name onto its successor
    of the same name; now the write carries the uid and resourceVersion it read."""
    kube = Kube(load_config(cluster.env["KUBECONFIG"]))
    cluster.apply(study_doc("again"), namespace)
    old = cluster.get("scalingstudy", "again", namespace)["metadata"]
    written = kube.patch_study_status(namespace, "again", {"phase": "Pending"}, old["uid"],
                                      old["resourceVersion"])  # fmt: skip
    assert written and written != old["resourceVersion"]
    # A write from the version before that one (the pass read a study that changed since).
    assert kube.patch_study_status(namespace, "again", {"phase": "Failed"}, old["uid"],
                                   old["resourceVersion"]) is None  # fmt: skip
    cluster.kubectl("delete", "scalingstudy", "again", "-n", namespace, "--wait=true")
    cluster.apply(study_doc("again"), namespace)
    new = cluster.get("scalingstudy", "again", namespace)["metadata"]
    assert new["uid"] != old["uid"]
    # The old study's pass, with its uid and latest version: refused, nothing lands.
    assert kube.patch_study_status(namespace, "again", {"phase": "Failed"}, old["uid"],
                                   written) is None  # fmt: skip
    assert "status" not in cluster.get("scalingstudy", "again", namespace)


def test_a_foreign_job_holding_a_trials_name_blocks_it_visibly_until_it_goes(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    """A 409 on a Job name the study does not own was ignored: the trial counted as
    started forever and a TrialsStarted Event fired every pass."""
    doc = small("held", parallelism=3)
    trial = Plan.of("held", parse_spec(doc["spec"])).trials[1].name
    foreign = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": trial, "labels": {"app": "someone-elses"}},
        "spec": {"suspend": True, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}},
    }  # fmt: skip
    assert cluster.apply(foreign, namespace).returncode == 0
    op: Operator = operator_factory(namespace)
    op.start()
    assert cluster.apply(doc, namespace).returncode == 0
    blocked = blocked_condition(cluster, "held", namespace, timeout=90)
    assert blocked["reason"] == "JobNameTaken" and trial in blocked["message"]
    assert "no owner" in blocked["message"]

    def others_done() -> dict[str, Any] | None:
        status = cluster.get("scalingstudy", "held", namespace).get("status") or {}
        return status if status.get("trials", {}).get("succeeded") == 2 else None

    status = wait_until("the two other trials", others_done, timeout=120)
    assert status["phase"] == "Running" and status["trials"]["pending"] == 1
    assert status["trials"]["running"] == 0
    said = [e for e in events(cluster, namespace, "held") if e["reason"] == "TrialsBlocked"]
    assert len(said) == 1, said
    started = " ".join(e["message"] for e in events(cluster, namespace, "held")
                       if e["reason"] == "TrialsStarted")  # fmt: skip
    assert trial not in started
    cluster.kubectl("delete", "job", trial, "-n", namespace, "--wait=true")
    done = wait_until("the study to finish",
                      lambda: phase_is(cluster, "held", namespace, "Succeeded", "Failed"),
                      timeout=120)["status"]  # fmt: skip
    assert done["phase"] == "Succeeded" and done["trials"]["succeeded"] == 3
    cleared = next(c for c in done["conditions"] if c["type"] == "TrialsBlocked")
    assert cleared["status"] == "False"


def test_a_quota_that_refuses_the_next_job_is_a_condition_not_a_crash_loop(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    """A 403 on a create (a ResourceQuota on count/jobs.batch: finished Jobs keep counting)
    made every pass raise, with no condition or Event, until /healthz failed."""
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "jobs"},
             "spec": {"hard": {"count/jobs.batch": "2"}}}  # fmt: skip
    assert cluster.apply(quota, namespace).returncode == 0
    op: Operator = operator_factory(namespace)
    op.start()
    assert cluster.apply(small("capped", parallelism=1), namespace).returncode == 0
    blocked = blocked_condition(cluster, "capped", namespace, timeout=120)
    assert blocked["reason"] == "CreateRefused", blocked
    assert "exceeded quota" in blocked["message"] and "Job capped-d" in blocked["message"]
    status = cluster.get("scalingstudy", "capped", namespace)["status"]
    assert status["trials"]["succeeded"] == 2 and status["phase"] == "Running"
    assert httpx.get(f"http://127.0.0.1:{op.metrics_port}/healthz").status_code == 200
    said = [e for e in events(cluster, namespace, "capped") if e["reason"] == "TrialsBlocked"]
    assert len(said) == 1 and "exceeded quota" in said[0]["message"], said
    quota["spec"]["hard"]["count/jobs.batch"] = "5"
    assert cluster.apply(quota, namespace).returncode == 0
    done = wait_until("the study to finish",
                      lambda: phase_is(cluster, "capped", namespace, "Succeeded", "Failed"),
                      timeout=120)["status"]  # fmt: skip
    assert done["phase"] == "Succeeded" and done["trials"]["succeeded"] == 3
    assert op.alive()
