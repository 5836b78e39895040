"""The operator as a user installs it: `helm install` of the chart, its Deployment's pod run
by the test node agent with what a kubelet gives a pod (the projected service-account
token and CA at /var/run/secrets/kubernetes.io/serviceaccount, KUBERNETES_SERVICE_HOST
and _PORT), the image's command `scalingstudy operator` from this environment, and only
the chart's RBAC (issue 40 item 1).

Pods here share this machine's network: each release gets a metrics port of its own
(operator.metricsPort), and an upgrade that rolls the pod changes it, since the new pod
starts while the old one still listens (on a cluster each pod has its own address).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.cluster.conftest import ROOT, Cluster, wait_until
from tests.harness.cluster import audit_events, free_port

CHART = ROOT / "charts" / "scalingstudy"
#: What the chart's own account is refused with, in the operator's log.
REFUSALS = ("403", "Forbidden")


def helm(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c.bin / "helm"), f"--kubeconfig={c.env['KUBECONFIG']}", *args],
        capture_output=True, text=True, check=False, timeout=180,
    )  # fmt: skip


def settings(c: Cluster, watch: Sequence[str], metrics_port: int) -> list[str]:
    """The values of a test install: the cluster's Prometheus and Pushgateway, the fast
    timings the other cluster tests give the operator, a metrics port of its own. The CRD
    is already there (the session applied it); it is the chart's copy (test_chart)."""
    values = {
        "prometheusUrl": c.env["PROMETHEUS_URL"],
        "pushgatewayUrl": c.env["PUSHGATEWAY_URL"],
        "operator.metricsPort": str(metrics_port),
        "service.port": str(metrics_port),
        "operator.resyncSeconds": "5",
        "operator.fitInterval": "2",
        "operator.resultGrace": "5",
        "crd.install": "false",
    }
    if watch:
        values["watchNamespaces"] = "{" + ",".join(watch) + "}"
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


@dataclass
class ChartOperator:
    """One release of the chart and its operator pod."""

    cluster: Cluster
    release: str
    namespace: str
    metrics_port: int
    #: The operator pods' logs, read before each pod goes (for the 403 check).
    logs: dict[str, str] = field(default_factory=dict)
    installed: bool = False

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component=operator"

    def pods(self) -> list[dict[str, Any]]:
        return self.cluster.items("pods", self.namespace, self.selector)

    def ready_pod(self, timeout: float = 120) -> dict[str, Any]:
        """The one operator pod once it is Running and Ready and answers its probe's
        /healthz on the chart's metrics port; no pod may have failed on the way."""

        def ready() -> dict[str, Any] | None:
            pods = self.pods()
            failed = [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Failed"]
            assert not failed, f"operator pods failed: {failed}; log: {self.log(failed[0])}"
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            if len(live) != 1 or live[0]["status"].get("phase") != "Running":
                return None
            ok = {c["type"]: c["status"] for c in live[0]["status"].get("conditions", [])}
            return live[0] if ok.get("Ready") == "True" and self.healthy() else None

        pod: dict[str, Any] = wait_until("the operator pod Running and Ready", ready, timeout)
        return pod

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/healthz"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self, pod: str) -> str:
        """The pod's log through the API server (`kubectl logs`), kept once read."""
        out = self.cluster.kubectl("logs", pod, "-n", self.namespace, check=False)
        if out.returncode == 0:
            self.logs[pod] = out.stdout
        return self.logs.get(pod, out.stderr)

    def refusals(self) -> list[str]:
        """Every line of every operator pod's log that a 403 answered."""
        for pod in self.pods():
            self.log(pod["metadata"]["name"])
        return [line for text in self.logs.values() for line in text.splitlines()
                if any(word in line for word in REFUSALS)]  # fmt: skip

    def upgrade(self, *values: str) -> subprocess.CompletedProcess[str]:
        for pod in self.pods():
            self.log(pod["metadata"]["name"])
        return helm(self.cluster, "upgrade", self.release, str(CHART), "-n", self.namespace,
                    "--reuse-values", *values)  # fmt: skip

    def uninstall(self) -> None:
        """`helm uninstall`, once; the pods' logs are read first."""
        if self.installed:
            self.refusals()
            out = helm(self.cluster, "uninstall", self.release, "-n", self.namespace,
                       "--wait", "--timeout=90s")  # fmt: skip
            assert out.returncode == 0, out.stderr
            self.installed = False


def job_creators(c: Cluster, namespace: str) -> set[tuple[str, str]]:
    """Who created Jobs in ``namespace`` (the API server's audit log): (user, the pod its
    token is bound to, "" for a token bound to none or a certificate)."""
    found = set()
    for event in audit_events(c.dir):
        ref: dict[str, Any] = event.get("objectRef") or {}  # type: ignore[assignment]
        user: dict[str, Any] = event.get("user") or {}  # type: ignore[assignment]
        if (
            event.get("verb") == "create"
            and ref.get("resource") == "jobs"
            and (ref.get("namespace") == namespace)
        ):
            pods = (user.get("extra") or {}).get("authentication.kubernetes.io/pod-name", [""])
            found.add((str(user.get("username")), str(pods[0])))
    return found


def adopt_crd(c: Cluster, release: str, namespace: str) -> None:
    """Mark the session's CRD as the release's, as a user adopts an existing object, so
    the chart installs it too (crd.install) and uninstall shows that it keeps it."""
    crd = "crd/scalingstudies.scalingstudy.io"
    c.kubectl("label", "--overwrite", crd, "app.kubernetes.io/managed-by=Helm")
    c.kubectl("annotate", "--overwrite", crd, f"meta.helm.sh/release-name={release}",
              f"meta.helm.sh/release-namespace={namespace}")  # fmt: skip


@contextmanager
def chart_operator(
    c: Cluster, watch: Sequence[str], *values: str, log_dir: Path, with_crd: bool = False
) -> Iterator[ChartOperator]:
    """The chart installed as the README installs it (release namespace created by helm),
    its operator pod Ready; uninstalled after, its pods' logs written to ``log_dir``.
    ``with_crd``: the chart installs the CRD too (adopting the session's)."""
    op = ChartOperator(c, "scalingstudy", f"op-{uuid.uuid4().hex[:8]}", free_port())
    crd = ["--set", "crd.install=true"] if with_crd else []
    if with_crd:
        adopt_crd(c, op.release, op.namespace)
    out = helm(c, "install", op.release, str(CHART), "-n", op.namespace, "--create-namespace",
               *settings(c, watch, op.metrics_port), *crd, *values)  # fmt: skip
    assert out.returncode == 0, out.stderr
    op.installed = True
    try:
        op.ready_pod()
        yield op
    finally:
        try:
            op.uninstall()
        finally:
            for pod, text in op.logs.items():
                (log_dir / f"{pod}.log").write_text(text)
            c.kubectl("delete", "namespace", op.namespace, "--wait=false", check=False)
