"""The Helm chart: lint, render, validate, install for real, and check the service
account can do exactly what the operator needs (issue 7)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.chart_operator import CHART, helm
from tests.cluster.conftest import ROOT, Cluster

EVERYTHING_ON = [
    "--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true",
    "--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true",
]  # fmt: skip
# No schemas for the Prometheus-operator kinds are available offline (their CRDs ship
# with that project); the rules inside PrometheusRule are checked by promtool instead.
NO_SCHEMA = "ServiceMonitor,PodMonitor,PrometheusRule"


def test_the_charts_admission_policy_is_the_plain_manifest_with_its_values(
    cluster: Cluster,
) -> None:
    def rendered(*values: str) -> list[Any]:
        out = helm(cluster, "template", "t", str(CHART), "--kube-version=1.35.4", "--show-only",
                   "templates/admission-policy.yaml", *values)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    plain = [
        d for d in yaml.safe_load_all((ROOT / "crds" / "admission-policy.yaml").read_text()) if d
    ]
    assert rendered() == plain
    widened = rendered("--set", "admission.trustedNamespaces={lab}",
                       "--set", "admission.allowedPriorityClasses={low,high}")  # fmt: skip
    variables = {v["name"]: v["expression"] for v in widened[0]["spec"]["variables"]}
    assert variables["trusted"] == 'request.namespace in ["lab"]'
    assert variables["priorityClasses"] == '["low","high"]'
    off = helm(cluster, "template", "t", str(CHART), "--kube-version=1.35.4",
               "--set", "admission.enabled=false")  # fmt: skip
    assert off.returncode == 0 and "ValidatingAdmissionPolicy" not in off.stdout


def test_chart_copy_of_the_crd_is_current() -> None:
    assert (CHART / "files" / "crd.yaml").read_text() == (
        ROOT / "crds" / "scalingstudies.yaml"
    ).read_text()


def test_helm_lint_strict(cluster: Cluster) -> None:
    out = helm(cluster, "lint", "--strict", str(CHART), *EVERYTHING_ON)
    assert out.returncode == 0, out.stdout + out.stderr


def test_values_schema_rejects_unknown_and_bad_values(cluster: Cluster) -> None:
    for bad, field in (
        ("typo=1", "typo"),
        ("replicas=3", "replicas"),
        ("operator.metricsPort=80", "metricsPort"),
    ):
        out = helm(cluster, "template", "x", str(CHART), "--kube-version=1.35.4", "--set", bad)
        assert out.returncode != 0 and field in out.stderr, out.stderr


def _openapi_schemas(c: Cluster, out: Path) -> None:
    """Standalone strict JSON schemas per kind from the live API server's OpenAPI,
    in kubeconform's file naming (kind-group-version.json), refs inlined."""
    spec = json.loads(c.kubectl("get", "--raw", "/openapi/v2", timeout=120).stdout)
    defs = spec["definitions"]

    def inline(node: Any, chain: tuple[str, ...] = ()) -> Any:
        """Inline $refs; a type that contains itself (JSONSchemaProps) stops at any."""
        if isinstance(node, list):
            return [inline(v, chain) for v in node]
        if not isinstance(node, dict):
            return node
        if isinstance(node.get("$ref"), str):
            name = node["$ref"].split("/")[-1]
            return {} if name in chain else inline(defs[name], (*chain, name))
        out_node: dict[str, Any] = {}
        for key, value in node.items():
            if key == "properties":  # a map of field names, any of which may be "$ref"
                out_node[key] = {k: inline(v, chain) for k, v in value.items()}
            else:
                out_node[key] = inline(value, chain)
        if out_node.get("type") == "object" and "properties" in out_node:
            out_node.setdefault("additionalProperties", False)
        return out_node

    out.mkdir(parents=True, exist_ok=True)
    for schema in defs.values():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            group = gvk["group"].split(".")[0]
            stem = "-".join(p for p in (gvk["kind"].lower(), group, gvk["version"]) if p)
            (out / f"{stem}.json").write_text(json.dumps(inline(schema)))


def test_rendered_chart_validates_with_kubeconform(cluster: Cluster, tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    _openapi_schemas(cluster, schemas)
    rendered = tmp_path / "rendered.yaml"
    for values in ([], ["--set", "watchNamespaces={a,b}"]):
        out = helm(
            cluster, "template", "t", str(CHART), "--kube-version=1.35.4", *EVERYTHING_ON, *values
        )
        assert out.returncode == 0, out.stderr
        rendered.write_text(out.stdout)
        check = subprocess.run(
            [str(cluster.bin / "kubeconform"), "-strict", "-summary", "-skip", NO_SCHEMA,
             "-schema-location", str(schemas / "{{.ResourceKind}}{{.KindSuffix}}.json"),
             str(rendered)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        assert "Invalid: 0, Errors: 0" in check.stdout
        # CustomResourceDefinition, Deployment, ... were really validated, not skipped.
        assert (
            re.search(r"Valid: (\d+)", check.stdout)
            and int(re.search(r"Valid: (\d+)", check.stdout).group(1)) >= 6
        )  # type: ignore[union-attr]


def _can(c: Cluster, sa: str, verb: str, resource: str, ns: str, sub: str = "") -> bool:
    args = ["auth", "can-i", verb, resource, "-n", ns, f"--as={sa}"]
    if sub:
        args.append(f"--subresource={sub}")
    return c.kubectl(*args, check=False).stdout.strip() == "yes"


@pytest.mark.parametrize("scope", ["namespaced", "cluster"])
def test_install_and_least_privilege(cluster: Cluster, namespace: str, scope: str) -> None:
    release = f"ss-{scope[:2]}-{namespace[-4:]}"
    # The CRD and the admission policy are cluster-wide: installed once, not per release.
    values = [
        "--set",
        "replicas=0",
        "--set",
        "crd.install=false",
        "--set",
        "admission.enabled=false",
    ]
    if scope == "namespaced":
        values += ["--set", f"watchNamespaces={{{namespace}}}"]
    # replicas=0: the account's rights alone are checked here; the chart's operator pod
    # running a whole study on them: test_quickstart_example_end_to_end (test_operator.py).
    out = helm(
        cluster, "install", release, str(CHART), "-n", namespace, *values, "--wait", "--timeout=60s"
    )
    assert out.returncode == 0, out.stderr
    sa = f"system:serviceaccount:{namespace}:{release}-scalingstudy"
    other = "default"
    assert _can(cluster, sa, "create", "jobs", namespace)
    assert _can(cluster, sa, "patch", "scalingstudies", namespace, "status")
    assert _can(cluster, sa, "watch", "scalingstudies", namespace)
    assert _can(cluster, sa, "list", "pods", namespace)
    assert not _can(cluster, sa, "get", "secrets", namespace)
    assert not _can(cluster, sa, "list", "secrets", namespace)
    assert not _can(cluster, sa, "patch", "scalingstudies", namespace)  # only its status
    # Owner references that block deletion (the control plane enforces it, as OpenShift).
    assert _can(cluster, sa, "update", "scalingstudies", namespace, "finalizers")
    assert not _can(cluster, sa, "update", "scalingstudies", namespace)
    assert not _can(cluster, sa, "delete", "scalingstudies", namespace)
    assert not _can(cluster, sa, "create", "pods", namespace)
    assert not _can(cluster, sa, "update", "jobs", namespace)
    # The study's ConfigMap of task and training settings: created once, never changed.
    assert _can(cluster, sa, "create", "configmaps", namespace)
    assert _can(cluster, sa, "get", "configmaps", namespace)
    assert not _can(cluster, sa, "update", "configmaps", namespace)
    assert not _can(cluster, sa, "delete", "configmaps", namespace)
    assert not _can(cluster, sa, "list", "configmaps", namespace)
    # The rendezvous Service of a trial of several pods: created and deleted, not changed.
    assert _can(cluster, sa, "create", "services", namespace)
    assert _can(cluster, sa, "delete", "services", namespace)
    assert not _can(cluster, sa, "update", "services", namespace)
    assert not _can(cluster, sa, "get", "services", namespace)
    # Leader election: its own Lease in the release namespace, by name; no other
    # controller's Lease there (review of issue 40), none deleted.
    assert _can(cluster, sa, "update", f"leases/{release}-scalingstudy", namespace)
    assert _can(cluster, sa, "get", f"leases/{release}-scalingstudy", namespace)
    assert not _can(cluster, sa, "update", "leases/kube-controller-manager", namespace)
    assert not _can(cluster, sa, "delete", f"leases/{release}-scalingstudy", namespace)
    assert _can(cluster, sa, "create", "jobs", other) == (scope == "cluster")
