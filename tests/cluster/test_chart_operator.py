"""The chart's operator in-cluster (issue 40 item 1): installed as the README says, its pod
Running and Ready on its service account alone, `helm upgrade` rolls it, `helm uninstall`
leaves none of its objects, its leader Lease included (the CRD stays, by the chart's
resource policy). The quickstart
under this operator: tests/cluster/test_operator.py::test_quickstart_example_end_to_end."""

from __future__ import annotations

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
    the admission policy and its binding (named, not labelled)."""
    selector = f"app.kubernetes.io/instance={op.release}"
    found = []
    for kind, own in RELEASE_KINDS.items():
        spaces = [op.namespace] if own else [""] if own is None else []
        if kind in ("roles", "rolebindings"):
            spaces.append(watched)
        for ns in spaces:
            found += [f"{kind}/{o['metadata']['name']}" for o in c.items(kind, ns, selector)]
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
        lease = "leases.coordination.k8s.io"
        holder = lambda: cluster.get(lease, op.release, op.namespace)["spec"].get(  # noqa: E731
            "holderIdentity"
        )
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
        op.uninstall()
        # helm deletes the RBAC with the Deployment, before the pod's shutdown releases
        # its Lease: that last request alone may be refused (the release is gone anyway).
        late = op.refusals()
        assert all("could not release the Lease" in line for line in late), late
        wait_until("nothing of the release left", lambda: not left_behind(cluster, op, namespace),
                   timeout=60)  # fmt: skip
        # The CRD stays (helm.sh/resource-policy: keep): uninstalling never deletes studies.
        crd = cluster.get("crd", POLICY, "")
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert cluster.get("scalingstudy", "rolled", namespace)["status"]["phase"] == "Succeeded"
