"""A study can do no more than its author: the ValidatingAdmissionPolicy on the real API
server (RBAC on, users impersonated), the operator's own check where the policy is not
installed, and trial pods under Pod Security Admission `restricted`."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from scalingstudy.admission import default_values, policy
from tests.cluster.conftest import Cluster, Operator, study_doc, wait_until
from tests.cluster.test_operator import events, finished, phase_is

LABEL = "scalingstudy.io/admission-test"
HOST_PATH = [{"name": "root", "hostPath": {"path": "/"}}]
TOKEN = [{"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]
#: (what the study asks for, the field and rule the refusal must name)
FORBIDDEN = [
    ({"volumes": HOST_PATH}, "spec.trainer.volumes", "hostPath"),
    ({"priorityClassName": "system-node-critical"}, "spec.trainer.priorityClassName",
     "system-node-critical"),
    ({"volumes": TOKEN}, "serviceAccountToken", "not allowed"),
]  # fmt: skip


def asking(name: str, trainer: dict[str, Any]) -> dict[str, Any]:
    doc = study_doc(name, dataSizes={"values": [100, 200, 400]}, modelSizes={"values": [4]})
    doc["spec"]["trainer"].update(copy.deepcopy(trainer))
    return doc


@pytest.fixture
def guarded(cluster: Cluster, namespace: str) -> Iterator[str]:
    """The shipped policy, bound to this test's namespace only (other tests share the API
    server), installed for the test and removed after."""
    cluster.kubectl("label", "namespace", namespace, f"{LABEL}={namespace}")
    values = default_values()
    docs = policy(values)
    docs[1]["spec"]["matchResources"] = {"namespaceSelector": {"matchLabels": {LABEL: namespace}}}
    text = "---\n".join(yaml.safe_dump(d) for d in docs)
    cluster.kubectl("apply", "-f", "-", input=text)
    # The API server loads policies asynchronously: wait until this one refuses (a
    # server-side dry run goes through admission every time and stores nothing).
    probe = yaml.safe_dump(asking("probe", {"volumes": HOST_PATH}))

    def refuses() -> bool:
        out = cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-",
                              input=probe, check=False)  # fmt: skip
        return "hostPath" in out.stderr

    wait_until("the policy to take effect", refuses, timeout=60)
    yield namespace
    cluster.kubectl("delete", "-f", "-", input=text, check=False)


def test_an_author_who_may_not_create_jobs_is_refused(cluster: Cluster, guarded: str) -> None:
    ns = guarded
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "study-author", "namespace": ns},
        "rules": [{"apiGroups": ["scalingstudy.io"], "resources": ["scalingstudies"],
                   "verbs": ["get", "list", "create", "patch", "update"]}],
    }  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(role))
    cluster.kubectl("create", "rolebinding", "alice-studies", "-n", ns, "--role=study-author",
                    "--user=alice")  # fmt: skip
    assert cluster.kubectl("auth", "can-i", "create", "scalingstudies", "-n", ns, "--as=alice",
                           check=False).stdout.strip() == "yes"  # fmt: skip
    assert cluster.kubectl("auth", "can-i", "create", "jobs", "-n", ns, "--as=alice",
                           check=False).stdout.strip() == "no"  # fmt: skip
    text = yaml.safe_dump(study_doc("by-alice"))
    refused = cluster.kubectl("apply", "-n", ns, "--as=alice", "-f", "-", input=text, check=False)
    assert refused.returncode != 0
    assert "can do no more than its author" in refused.stderr
    assert "alice may not create Jobs in namespace " + ns in refused.stderr
    cluster.kubectl("create", "role", "job-author", "-n", ns, "--verb=create", "--resource=jobs")
    cluster.kubectl("create", "rolebinding", "alice-jobs", "-n", ns, "--role=job-author",
                    "--user=alice")  # fmt: skip

    def accepted() -> bool:
        out = cluster.kubectl("apply", "-n", ns, "--as=alice", "-f", "-", input=text, check=False)
        return out.returncode == 0

    assert wait_until("alice's study to be accepted", accepted, timeout=30)


@pytest.mark.parametrize(("trainer", "field", "rule"), FORBIDDEN)
def test_what_no_study_needs_is_refused_at_apply(
    cluster: Cluster, guarded: str, trainer: dict[str, Any], field: str, rule: str
) -> None:
    out = cluster.apply(asking("greedy", trainer), guarded)
    assert out.returncode != 0
    assert field in out.stderr and rule in out.stderr, out.stderr
    # What the allow-lists do allow passes.
    pvc = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]}
    assert cluster.apply(asking("modest", pvc), guarded).returncode == 0


def test_the_operator_refuses_the_same_specs_without_the_policy(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    names = [f"greedy-{i}" for i in range(len(FORBIDDEN))]
    for name, (trainer, _, _) in zip(names, FORBIDDEN, strict=True):
        assert cluster.apply(asking(name, trainer), namespace).returncode == 0
    for name, (_, field, rule) in zip(names, FORBIDDEN, strict=True):
        status = wait_until(
            f"{name} to be refused",
            lambda n=name: phase_is(cluster, n, namespace, "Failed"),  # type: ignore[misc]
            timeout=60,
        )["status"]
        valid = next(c for c in status["conditions"] if c["type"] == "SpecValid")
        assert valid["status"] == "False" and field in valid["message"] and rule in valid["message"]
        assert not cluster.items("jobs", namespace, f"scalingstudy.io/study={name}")
        warnings = [e for e in events(cluster, namespace, name) if e["type"] == "Warning"]
        assert any(e["reason"] == "Forbidden" and field in e["message"] for e in warnings)


def test_trial_pods_are_admitted_under_pod_security_restricted(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    cluster.kubectl("label", "namespace", namespace,
                    "pod-security.kubernetes.io/enforce=restricted")  # fmt: skip
    op: Operator = operator_factory(namespace)
    op.start()
    assert cluster.apply(asking("restricted", {}), namespace).returncode == 0
    done = finished(cluster, "restricted", namespace, timeout=120)
    assert done["phase"] == "Succeeded", done.get("conditions")
    assert len(cluster.items("pods", namespace, "scalingstudy.io/study=restricted")) == 3
