"""The chart's operator in-cluster (issue 40 item 1): installed as the README says, its pod
Running and Ready on its service account alone, `helm upgrade` rolls it, `helm uninstall`
leaves none of its objects, its leader Lease included (the CRD stays, by the chart's
resource policy). The quickstart
under this operator: tests/cluster/test_operator.py::test_quickstart_example_end_to_end."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.cluster.chart_operator import ChartOperator, chart_operator
from tests.cluster.conftest import Cluster, study_doc, wait_until
from tests.cluster.test_operator import finished
from tests.harness.cluster import free_port


def args_of(pod: dict[str, Any]) -> list[str]:
    container = pod["spec"]["containers"][0]
    return [*container["command"], *container["args"]]


#: What a release makes, by kind: namespaced in the release's namespace (True) or in the
#: watched one (False), or cluster-wide (None).
RELEASE_KINDS = {
    "deployments": True, "replicasets": True, "pods": True, "serviceaccounts": True,
    "services": True, "roles": True, "rolebindings": True, "clusterroles": None,
    "clusterrolebindings": None, "leases": True,
}  # fmt: skip
POLICY = "scalingstudies.scalingstudy.io"


def left_behind(c: Cluster, op: ChartOperator, watched: str) -> list[str]:
    """The release's objects still on the API server (kind/name): every object with its
    instance label (pods and ReplicaSets included), the Roles in the watched namespace,
    the Leases in the release's, the admission policy and its binding (named, not
    labelled)."""
    selector = f"app.kubernetes.io/instance={op.release}"
    found = []
    for kind, own in RELEASE_KINDS.items():
        spaces = [op.namespace] if own else [""] if own is None else []
        if kind in ("roles", "rolebindings"):
            spaces.append(watched)
        for ns in spaces:
            # Any Lease in the release's namespace is the operator's (one it made itself
            # would carry no label of the release).
            mine = "" if kind == "leases" else selector
            found += [f"{kind}/{o['metadata']['name']}" for o in c.items(kind, ns, mine)]
    for kind in ("validatingadmissionpolicies", "validatingadmissionpolicybindings"):
        found += [f"{kind}/{o['metadata']['name']}" for o in c.items(kind, "")
                  if o["metadata"]["name"] == POLICY]  # fmt: skip
    return found


def test_chart_upgrade_rolls_the_operator_and_uninstall_leaves_nothing(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    with chart_operator(cluster, [namespace], log_dir=tmp_path, with_crd=True) as op:
        first = op.ready_pod()
        assert args_of(first)[:2] == ["scalingstudy", "operator"]
        assert "--resync-seconds=5" in args_of(first)

        def holder() -> str:
            lease = cluster.get("leases.coordination.k8s.io", op.release, op.namespace)
            return str(lease["spec"].get("holderIdentity") or "")

        wait_until("the first pod to lead", lambda: holder() == first["metadata"]["name"])
        port = free_port()
        out = op.upgrade("--set", f"operator.metricsPort={port}", "--set",
                         f"service.port={port}", "--set", "operator.resyncSeconds=7")  # fmt: skip
        assert out.returncode == 0, out.stderr
        op.metrics_port = port
        second = op.ready_pod()
        assert second["metadata"]["uid"] != first["metadata"]["uid"]
        assert "--resync-seconds=7" in args_of(second) and f"--metrics-port={port}" in args_of(
            second
        )
        wait_until("the new pod to lead", lambda: holder() == second["metadata"]["name"])
        # The new pod reconciles: a small study succeeds under it.
        cluster.apply(
            study_doc("rolled", dataSizes={"values": [100, 200, 400]}, modelSizes={"values": [4]}),
            namespace,
        )
        assert finished(cluster, "rolled", namespace, timeout=120)["phase"] == "Succeeded"
        installed = {item.split("/")[0] for item in left_behind(cluster, op, namespace)}
        assert installed == {*RELEASE_KINDS, "validatingadmissionpolicies",
                             "validatingadmissionpolicybindings"} - {"clusterroles",
                             "clusterrolebindings"}, installed  # fmt: skip
        assert op.refusals() == []
        # After this, a refusal is no fault of the RBAC: helm deletes the Roles right after
        # the Deployment, before the pod's SIGTERM, so the leader's last renewal or its
        # release of the Lease may be refused (seen: "could not release the Lease").
        op.uninstall()
        wait_until("nothing of the release left", lambda: not left_behind(cluster, op, namespace),
                   timeout=60)  # fmt: skip
        # The CRD stays (helm.sh/resource-policy: keep): uninstalling never deletes studies.
        crd = cluster.get("crd", POLICY, "")
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert cluster.get("scalingstudy", "rolled", namespace)["status"]["phase"] == "Succeeded"


def probed_pod(name: str, command: list[str], port: int) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/", "port": "web"}, "periodSeconds": 1}
    ports = [{"name": "web", "containerPort": port}]
    container = {"name": "main", "image": "local", "command": command, "ports": ports,
                 "readinessProbe": probe}  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [container], "restartPolicy": "Never"}}  # fmt: skip


def test_a_pod_is_ready_only_once_its_readiness_probe_answers(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """The node agent runs httpGet readiness probes as a kubelet does (a rollout waits on
    Ready): a pod whose probe's port is not served yet is Running and unready, and turns
    Ready once it serves."""
    port, trigger = free_port(), tmp_path / "serve-now"
    script = (f"while [ ! -e {trigger} ]; do sleep 0.2; done; "
              f"exec {sys.executable} -m http.server {port} --bind 127.0.0.1")  # fmt: skip
    assert cluster.apply(probed_pod("web", ["sh", "-c", script], port), namespace).returncode == 0

    def pod() -> dict[str, Any]:
        return cluster.get("pod", "web", namespace)

    def ready(obj: dict[str, Any]) -> str:
        conditions = obj["status"].get("conditions") or []
        return next((c["status"] for c in conditions if c["type"] == "Ready"), "")

    def running() -> dict[str, Any] | None:
        obj = pod()
        return obj if obj["status"].get("phase") == "Running" else None

    started: dict[str, Any] = wait_until("the pod Running", running)
    assert ready(started) == "False"
    assert started["status"]["containerStatuses"][0]["ready"] is False
    trigger.touch()
    wait_until("the pod Ready", lambda: ready(pod()) == "True", timeout=60)
    assert pod()["status"]["containerStatuses"][0]["ready"] is True
