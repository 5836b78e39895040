"""Session fixtures: one real control plane per test session, a fresh namespace per test.

Every test here is marked `cluster`. Each xdist worker starts its own control plane the
first time one of its tests needs it, so `scripts/test` (2 workers) runs two, with the
cluster tests spread over both. (An `xdist_group` marker added here never grouped them:
xdist reads the groups before this hook adds them. Grouped onto one worker, the cluster
tests alone would take longer than the whole suite does now.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.harness import cluster as harness
from tests.harness import kueue as kueue_harness
from tests.harness.agent import client_from_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "scalingstudies.yaml"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report ends with the last lines of each operator it started and of
    the node agent: a study that never finished says why only there."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    args = getattr(item, "funcargs", {})
    logs = [op.log for op in getattr(args.get("operator_factory"), "made", [])]
    if isinstance(args.get("cluster"), Cluster):
        logs.append(args["cluster"].dir / "logs" / "node-agent.log")
    for log in logs:
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-60:]
            report.sections.append((f"last lines of {log.name}", "\n".join(tail)))


@dataclass
class Cluster:
    """The test control plane. Reads (``get``, ``items``) go to the API server over HTTP:
    tests poll them every half second, and a kubectl process per poll cost about 70 ms of
    CPU each, a large share of the suite's 2 cores. Writes and printed tables use kubectl,
    as a user would."""

    dir: Path
    env: dict[str, str]
    _api: httpx.Client | None = field(default=None, init=False, repr=False)
    _paths: dict[str, tuple[str, bool]] = field(default_factory=dict, init=False, repr=False)

    @property
    def bin(self) -> Path:
        return Path(self.env["TESTBIN"])

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={self.env['KUBECONFIG']}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        return out

    @property
    def api(self) -> httpx.Client:
        if self._api is None:
            self._api = client_from_kubeconfig(Path(self.env["KUBECONFIG"]))
        return self._api

    def _resource(self, kind: str) -> tuple[str, bool]:
        """The collection path of ``kind`` (as kubectl takes it: plural, singular, kind,
        short name or ``plural.group``) and whether it is namespaced, from the API
        server's discovery; the core group first, as kubectl resolves `events`."""
        if kind not in self._paths:
            self._paths.update(_discover(self.api))
        if kind not in self._paths:
            raise AssertionError(f"the API server serves no resource {kind!r}")
        return self._paths[kind]

    def _read(self, kind: str, namespace: str, name: str = "", **params: str) -> Any:
        collection, namespaced = self._resource(kind)
        prefix, plural = collection.rsplit("/", 1)
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else collection
        response = self.api.get(f"{path}/{name}" if name else path, params=params)
        if response.status_code != 200:
            raise AssertionError(f"GET {response.url}: {response.status_code} {response.text}")
        return response.json()

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        obj: dict[str, Any] = self._read(kind, namespace, name)
        return obj

    def items(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        """The objects of ``kind`` in ``namespace`` that match the label ``selector``."""
        params = {"labelSelector": selector} if selector else {}
        items: list[dict[str, Any]] = self._read(kind, namespace, **params)["items"]
        return items

    def apply(self, doc: dict[str, Any] | str, namespace: str) -> subprocess.CompletedProcess[str]:
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
        return self.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=False)

    def prometheus_down(self) -> None:
        harness.stop(self.dir, "prometheus")

    def prometheus_up(self) -> None:
        ports = (
            self.env["PROMETHEUS_URL"].rsplit(":", 1)[1],
            self.env["PUSHGATEWAY_URL"].rsplit(":", 1)[1],
        )
        harness.start_prometheus(self.dir, int(ports[0]), int(ports[1]))


def _discover(api: httpx.Client) -> dict[str, tuple[str, bool]]:
    """Every name kubectl accepts for a resource -> (its collection path, namespaced)."""
    groups = api.get("/apis").raise_for_status().json()["groups"]
    versions = [("/api/v1", "")] + [
        (f"/apis/{g['preferredVersion']['groupVersion']}", g["name"]) for g in groups
    ]
    names: dict[str, tuple[str, bool]] = {}
    for prefix, group in versions:
        for r in api.get(prefix).raise_for_status().json()["resources"]:
            if "/" in r["name"]:
                continue  # a subresource
            where = (f"{prefix}/{r['name']}", bool(r["namespaced"]))
            aliases = {r["name"], r.get("singularName") or "", r["kind"].lower(),
                       *r.get("shortNames", [])}  # fmt: skip
            for alias in aliases - {""}:
                names.setdefault(alias, where)
                if group:
                    names.setdefault(f"{alias}.{group}", where)
    return names


def wait_until(
    what: str, check: Callable[[], Any], timeout: float = 120, every: float = 0.5
) -> Any:
    """Poll until check() returns something truthy; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    dir = tmp_path_factory.mktemp("testcluster")
    env = harness.up(dir)
    try:
        c = Cluster(dir, env)
        c.kubectl("apply", "-f", str(CRD))
        # Polled rather than `kubectl wait`: that fails at once ("accessor error") while the
        # new CRD has no status yet, which happens when two workers start control planes.
        wait_until(
            "the ScalingStudy CRD to be established",
            lambda: c.kubectl(
                "get", "crd/scalingstudies.scalingstudy.io", "-o",
                "jsonpath={.status.conditions[?(@.type=='Established')].status}", check=False,
            ).stdout.strip() == "True",
            timeout=60,
        )  # fmt: skip
        yield c
    finally:
        harness.down(dir)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    wait_until(
        "the namespace's default service account",
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=60,
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def kueue(cluster: Cluster) -> kueue_harness.Kueue:
    """Kueue's manager, CRDs and webhooks, started once for the session when a test
    asks (see tests/harness/kueue.py for what is real and what stands in)."""
    return kueue_harness.start(cluster.dir, cluster.kubectl)


@pytest.fixture
def kueue_namespace(cluster: Cluster, kueue: kueue_harness.Kueue, namespace: str) -> str:
    """A test namespace under Kueue's webhooks."""
    cluster.kubectl("label", "namespace", namespace, f"{kueue_harness.NAMESPACE_LABEL}=true")
    return namespace


class Operator:
    """`scalingstudy operator` as a real subprocess, killable and restartable."""

    def __init__(self, cluster: Cluster, namespaces: Sequence[str], log: Path, *extra: str) -> None:
        self.cluster = cluster
        self.namespaces = list(namespaces)
        self.log = log
        self.extra = list(extra)
        self.metrics_port = harness.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, prometheus: bool = True) -> None:
        env = {**os.environ, "KUBECONFIG": self.cluster.env["KUBECONFIG"]}
        args = [sys.executable, "-m", "scalingstudy.cli", "operator"]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        args += [
            f"--prometheus-url={self.cluster.env['PROMETHEUS_URL']}",
            f"--pushgateway-url={self.cluster.env['PUSHGATEWAY_URL']}",
            f"--metrics-port={self.metrics_port}",
            "--result-grace=5",
            "--fit-interval=2",
            "--resync-seconds=5",
            *self.extra,
        ]
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env)
        handle.close()
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no clean-up handler runs, as when a node dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def operator_factory(cluster: Cluster, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    made: list[Operator] = []

    def make(*namespaces: str, extra: Sequence[str] = ()) -> Operator:
        op = Operator(cluster, namespaces, tmp_path / f"operator-{len(made)}.log", *extra)
        made.append(op)
        return op

    make.made = made  # type: ignore[attr-defined]  # read by pytest_runtest_makereport
    yield make
    for op in made:
        op.stop()


def study_doc(name: str, **spec: Any) -> dict[str, Any]:
    """A small study with the contract trainer (a real process that trains nothing)."""
    base: dict[str, Any] = {
        "task": {"name": "teacher-student"},
        "trainer": {
            "command": [sys.executable, str(ROOT / "tests" / "contract_trainer.py")],
            "env": [
                {
                    "name": "PYTHONPATH",
                    "value": f"{ROOT / 'operator'}:{ROOT / 'trainer'}:{ROOT / 'sdk'}",
                }
            ],
            "backoffLimit": 0,
        },
        "dataSizes": {"values": [100, 200, 400, 800, 1600]},
        "modelSizes": {"values": [4, 16]},
        "fit": {"bootstrap": 50},
        "parallelism": 4,
    }
    base.update(spec)
    return {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": name},
        "spec": base,
    }


def trained_alone(
    cluster: Cluster, namespace: str, trial: str, training: dict[str, Any]
) -> dict[str, Any]:
    """The result of a study's trial trained here by one uninterrupted process, with the
    environment of its Job and the study's task and training settings: what a trial
    that was preempted, resumed or split over pods must end at."""
    job = cluster.get("job", trial, namespace)
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
           if "value" in e and e["name"].startswith("SCALINGSTUDY_")}  # fmt: skip
    study = job["metadata"]["labels"]["scalingstudy.io/study"]
    config = cluster.get("configmap", f"{study}-trial-config", namespace)["data"]
    result = cluster.dir / f"alone-{namespace}-{trial}.json"
    done = subprocess.run(
        [sys.executable, "-m", "scalingstudy_trainer"],
        env={**os.environ, **env,
             "SCALINGSTUDY_TASK": config["task.json"],
             "SCALINGSTUDY_TRAINING": json.dumps(training),
             "SCALINGSTUDY_TASK_FILE": "", "SCALINGSTUDY_TRAINING_FILE": "",
             "SCALINGSTUDY_NODES": "1", "SCALINGSTUDY_PROCESSES_PER_POD": "1",
             "SCALINGSTUDY_RESULT_FILE": str(result), "SCALINGSTUDY_PUSHGATEWAY": "",
             "SCALINGSTUDY_CHECKPOINT_DIR": "", "SCALINGSTUDY_METRICS_PORT": "0"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(result.read_text())  # type: ignore[no-any-return]


def pod_events(cluster: Cluster, namespace: str, prefix: str) -> list[list[dict[str, Any]]]:
    """The trainer's JSON-line log of every pod whose name starts with ``prefix``, one
    list per pod, oldest pod first (where the test agent keeps the logs)."""
    logs = sorted((cluster.dir / "pods" / namespace).glob(f"{prefix}*/log"),
                  key=lambda p: p.stat().st_mtime)  # fmt: skip
    return [[json.loads(line) for line in log.read_text().splitlines()
             if line.startswith('{"ts"')] for log in logs]  # fmt: skip
