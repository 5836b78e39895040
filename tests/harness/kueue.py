"""Kueue on the test control plane, started on demand.

Real: the Kueue manager (v0.17.0, built from the Go module proxy by
scripts/testbin-kueue) with its controllers, scheduler, preemption and webhooks, its
CRDs from the module's config/components, and the kube-apiserver calling those
webhooks. What the harness does instead of Kueue's own deployment: no cert-manager and
no internal certificate management (the harness's CA signs a serving certificate for
127.0.0.1), the webhook configurations point at the manager's loopback URL instead of a
Service, they apply only in namespaces labelled NAMESPACE_LABEL (so the tests that do
not use Kueue never depend on it), only the batch/v1 Job integration is on, the
visibility API server and the metrics endpoint are off (a certificate pair is still put
where v0.17 insists on reading one, /etc/kueue/metrics/certs). The node agent still
stands in for the kubelet.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness.cluster import ROOT, ClusterError, Launcher, free_port, wait_for
from tests.harness.pki import Pki, issue_server_certificate

NAMESPACE_LABEL = "scalingstudy.test/kueue"
SYSTEM_NAMESPACE = "kueue-system"
#: Webhooks of what the tests use: Kueue's own objects and batch/v1 Jobs.
KEPT_PATHS = ("-kueue-x-k8s-io-", "-batch-v1-job")
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")


def kueue_dir() -> Path:
    """The built manager and its module (scripts/testbin-kueue builds them once)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "testbin-kueue")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Kueue:
    dir: Path
    health_port: int

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2).is_success
        except httpx.HTTPError:
            return False


def webhook_configurations(manifests: str, url: str, ca: bytes) -> list[dict[str, Any]]:
    """Kueue's webhook configurations for the tests: the kept webhooks only, called at
    ``url`` with the harness's CA, in labelled namespaces only."""
    out = []
    for doc in yaml.safe_load_all(manifests):
        if not doc:
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"]["name"] = f"kueue-{doc['metadata']['name']}"
        hooks = []
        for hook in doc.get("webhooks") or []:
            path = hook["clientConfig"]["service"]["path"]
            if not any(p in path for p in KEPT_PATHS):
                continue
            hook["clientConfig"] = {"url": f"{url}{path}",
                                    "caBundle": base64.b64encode(ca).decode()}  # fmt: skip
            hook["namespaceSelector"] = {"matchLabels": {NAMESPACE_LABEL: "true"}}
            hook["timeoutSeconds"] = 10
            hooks.append(hook)
        doc["webhooks"] = hooks
        out.append(doc)
    return out


def manager_configuration(webhook_port: int, health_port: int, cert_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": SYSTEM_NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
    }


def _metrics_certificate(certs: Path) -> None:
    """Kueue v0.17 without internal certificate management reads its metrics serving
    certificate from a fixed path, even with metrics off (bindAddress 0, as here): any
    valid pair there lets it start. Written once (needs root, as on our machines)."""
    fixed = METRICS_CERT_DIR
    if (fixed / "tls.crt").exists() and (fixed / "tls.key").exists():
        return
    try:
        fixed.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            (fixed / name).write_bytes((certs / name).read_bytes())
    except OSError as exc:
        raise ClusterError(f"Kueue needs a certificate pair in {fixed}: {exc}") from exc


def start(dir: Path, kubectl: Callable[..., Any]) -> Kueue:
    """Install Kueue's CRDs and webhooks and start its manager against the cluster of
    ``dir`` (kubectl: the harness's admin kubectl). Stopped with the cluster."""
    built = kueue_dir()
    module = built / "module" / "config" / "components"
    pki = Pki(dir / "pki")
    issue_server_certificate(pki, "kueue-webhook")
    certs = dir / "kueue-certs"
    certs.mkdir(exist_ok=True)
    (certs / "tls.crt").write_bytes(pki.cert("kueue-webhook").read_bytes())
    (certs / "tls.key").write_bytes(pki.key("kueue-webhook").read_bytes())
    _metrics_certificate(certs)
    kubectl("apply", "--server-side", "-f", str(module / "crd" / "bases"))

    def established() -> bool:
        out = kubectl("get", "crd", "-o", "json", check=False)
        crds = [c for c in json.loads(out.stdout or '{"items": []}')["items"]
                if c["spec"]["group"] == "kueue.x-k8s.io"]  # fmt: skip
        return bool(crds) and all(
            any(c["type"] == "Established" and c["status"] == "True"
                for c in (crd.get("status") or {}).get("conditions") or [])
            for crd in crds
        )  # fmt: skip

    wait_for("Kueue's CRDs", established, dir)
    kubectl("create", "namespace", SYSTEM_NAMESPACE, check=False)
    webhook_port, health_port = free_port(), free_port()
    config = dir / "kueue-config.yaml"
    config.write_text(yaml.safe_dump(manager_configuration(webhook_port, health_port, certs)))
    Launcher(dir).start(
        "kueue",
        [str(built / "kueue"), f"--config={config}", "--feature-gates=VisibilityOnDemand=false"],
        env={"KUBECONFIG": str(dir / "admin.kubeconfig")},
    )
    kueue = Kueue(dir, health_port)
    wait_for("the Kueue manager", kueue.ready, dir)
    hooks = webhook_configurations(
        (module / "webhook" / "manifests.yaml").read_text(),
        f"https://127.0.0.1:{webhook_port}",
        pki.ca.read_bytes(),
    )
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(hooks))
    return kueue


def queues(namespace: str, *, gpus: int, cpu: str = "64") -> list[dict[str, Any]]:
    """A ResourceFlavor, a ClusterQueue with GPU and CPU quota that preempts lower
    priorities within itself, and a LocalQueue `gpus` in ``namespace``."""
    cq = f"cq-{namespace}"
    return [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
         "metadata": {"name": "default-flavor"}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
         "metadata": {"name": cq},
         "spec": {
             "namespaceSelector": {},
             "preemption": {"withinClusterQueue": "LowerPriority"},
             "resourceGroups": [{
                 "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                 "flavors": [{"name": "default-flavor", "resources": [
                     {"name": "cpu", "nominalQuota": cpu},
                     {"name": "memory", "nominalQuota": "256Gi"},
                     {"name": "nvidia.com/gpu", "nominalQuota": gpus},
                 ]}],
             }],
         }},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": "gpus", "namespace": namespace},
         "spec": {"clusterQueue": cq}},
    ]  # fmt: skip
