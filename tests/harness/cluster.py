"""Start and stop a real, single-machine Kubernetes control plane with Prometheus.

`up(dir)` runs etcd, kube-apiserver, kube-controller-manager, a Pushgateway, a Prometheus
that scrapes it every second (honor_labels) and the test node agent, all on loopback with
free ports and all state under `dir`. It writes `dir/env` (KUBECONFIG, PROMETHEUS_URL,
PUSHGATEWAY_URL) and `dir/pids`; `down(dir)` stops exactly the processes recorded there.
`scripts/testcluster` and the pytest fixtures both call these functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from scalingstudy_sdk.contract import MASTER_PORT
from tests.harness.pki import CLIENT_EXT, Pki, issue_server_certificate, make_pki
from tests.harness.pki import _issue as issue_certificate

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 120.0


class ClusterError(RuntimeError):
    pass


def testbin() -> Path:
    """Folder of the built binaries (scripts/testbin builds them once, then only prints)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "testbin")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


#: Listening ports come from below the kernel's ephemeral range (32768-60999 by
#: default): a port the OS hands out for bind(0) lies inside it, and between picking it
#: and the component binding it, an outgoing connection (the API server's to etcd, say)
#: can take it ("bind: address already in use" for Prometheus, seen once in CI).
LISTEN_PORTS = range(20000, 32000)
#: Ports this process handed out: none twice (a control plane's ports are all picked
#: before any is bound).
_handed: set[int] = set()


def _worker_ports() -> range:
    """This pytest worker's share of LISTEN_PORTS. Workers pick ports in separate
    processes: with one range, a port one worker picked but had not bound yet (the
    controller-manager's waits for the API server) could be taken by the other's bind
    ("address already in use", seen once in CI: a control plane without its
    controller-manager)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker) if worker.isdigit() else 0
    share = len(LISTEN_PORTS) // max(count, 1)
    start = LISTEN_PORTS.start + index * share
    return range(start, start + share)


def free_port() -> int:
    """A port free now, outside the ephemeral range and in this worker's share of it,
    chosen at random, checked by a bind, and never handed out twice by this process."""
    ports = _worker_ports()
    for _ in range(200):
        port = random.choice(ports)
        if port in _handed or port == MASTER_PORT:  # multi-pod trials' rendezvous
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed.add(port)
        return port
    raise ClusterError(f"no free port in {ports.start}-{ports.stop - 1}")


@dataclass(frozen=True)
class Endpoints:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    pushgateway: int
    prometheus: int
    #: The node agent's container-log endpoint (a kubelet's port).
    kubelet: int

    @classmethod
    def pick(cls) -> Endpoints:
        return cls(*(free_port() for _ in range(7)))


#: The API server's client identity towards kubelets (`kubectl logs` goes through it).
KUBELET_CLIENT = "kube-apiserver-kubelet-client"


def kubelet_certificates(pki: Pki) -> None:
    """The node agent's serving certificate (for 127.0.0.1, its InternalIP) and the API
    server's client certificate towards it, as kubeadm makes them; idempotent."""
    issue_server_certificate(pki, "kubelet")
    if not pki.cert(KUBELET_CLIENT).exists():
        issue_certificate(pki, KUBELET_CLIENT, f"/O=system:masters/CN={KUBELET_CLIENT}",
                          CLIENT_EXT)  # fmt: skip


def kubeconfig(pki: Pki, server: str, user: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": server, "certificate-authority": str(pki.ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki.cert(user)),
                    "client-key": str(pki.key(user)),
                },
            }
        ],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        "current-context": "test",
    }


class Launcher:
    """Starts daemons with their logs under dir/logs and records their pids in dir/pids."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        (dir / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        log = (self.dir / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=self.dir,
        )
        log.close()
        with (self.dir / "pids").open("a") as f:
            f.write(f"{name} {proc.pid} {Path(argv[0]).name}\n")
        return proc.pid


def wait_for(
    what: str, check: Callable[[], bool], dir: Path, timeout: float = STARTUP_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError):
            if check():
                return
        time.sleep(0.2)
    raise ClusterError(f"{what} did not come up within {timeout:.0f} s; logs in {dir / 'logs'}")


def _http_ok(url: str, **kwargs: object) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=2, **kwargs).status_code == 200  # type: ignore[arg-type]


# Tests count what was really written: every write to Jobs and ScalingStudies, by whom.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "verbs": ["create", "update", "patch", "delete"],
            "resources": [
                {"group": "batch", "resources": ["jobs"]},
                {
                    "group": "scalingstudy.io",
                    "resources": ["scalingstudies", "scalingstudies/status"],
                },
                {"group": "", "resources": ["events"]},
            ],
        },
        {"level": "None"},
    ],
}


def audit_events(dir: Path) -> list[dict[str, object]]:
    """The API server's audit log: one dict per completed write request."""
    path = dir / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prometheus_config(pushgateway: str) -> str:
    return yaml.safe_dump(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "pushgateway",
                    "honor_labels": True,
                    "static_configs": [{"targets": [pushgateway]}],
                }
            ],
        }
    )


def start_prometheus(dir: Path, port: int, pushgateway_port: int) -> None:
    """Also used by tests that stop Prometheus and bring it back."""
    config = dir / "prometheus.yml"
    config.write_text(prometheus_config(f"127.0.0.1:{pushgateway_port}"))
    Launcher(dir).start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={dir / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
    )
    wait_for("prometheus", _http_ok(f"http://127.0.0.1:{port}/-/ready"), dir)


def up(dir: Path, *, agent_slots: int = 16) -> dict[str, str]:
    """Start everything; return the variables also written to dir/env."""
    dir = dir.resolve()
    if (dir / "pids").exists():
        raise ClusterError(f"{dir} already holds a cluster (dir/pids exists); run down first")
    bin = testbin()
    pki = make_pki(dir / "pki")
    ports = Endpoints.pick()
    launcher = Launcher(dir)
    server = f"https://127.0.0.1:{ports.apiserver}"
    for user in ("admin", "controller-manager", "agent"):
        (dir / f"{user}.kubeconfig").write_text(yaml.safe_dump(kubeconfig(pki, server, user)))
    env = {
        "KUBECONFIG": str(dir / "admin.kubeconfig"),
        "PROMETHEUS_URL": f"http://127.0.0.1:{ports.prometheus}",
        "PUSHGATEWAY_URL": f"http://127.0.0.1:{ports.pushgateway}",
        "TESTCLUSTER_DIR": str(dir),
        "TESTBIN": str(bin),
    }
    try:
        _start_all(dir, bin, pki, ports, launcher, agent_slots)
    except BaseException:
        down(dir)
        raise
    (dir / "env").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
    return env


def _start_all(
    dir: Path, bin: Path, pki: Pki, ports: Endpoints, launcher: Launcher, agent_slots: int
) -> None:
    kubelet_certificates(pki)
    etcd_url = f"http://127.0.0.1:{ports.etcd}"
    peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
    launcher.start(
        "etcd",
        [
            str(bin / "etcd"),
            f"--data-dir={dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    wait_for("etcd", _http_ok(f"{etcd_url}/health"), dir)
    launcher.start("pushgateway", [
        "prometheus-pushgateway",
        f"--web.listen-address=127.0.0.1:{ports.pushgateway}",
        "--web.enable-admin-api",
        "--log.level=warn",
    ])  # fmt: skip
    policy = dir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    launcher.start(
        "kube-apiserver",
        [
            str(bin / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.cert('apiserver')}",
            f"--tls-private-key-file={pki.key('apiserver')}",
            f"--client-ca-file={pki.ca}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,LimitRanger,"
            "DefaultStorageClass,ResourceQuota,Priority,DefaultTolerationSeconds,"
            "MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,"
            # As OpenShift has it: an owner reference with blockOwnerDeletion needs the
            # right to update the owner's finalizers (the chart's RBAC is checked under it).
            "OwnerReferencesPermissionEnforcement",
            # The endpoints of the `kubernetes` Service may not be a loopback address.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            # Pod logs are read from the node agent as from a kubelet: at the Node's
            # InternalIP and daemonEndpoints port, over TLS both ways.
            f"--kubelet-client-certificate={pki.cert(KUBELET_CLIENT)}",
            f"--kubelet-client-key={pki.key(KUBELET_CLIENT)}",
            f"--kubelet-certificate-authority={pki.ca}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={dir / 'audit.log'}",
            "--audit-log-format=json",
            "--v=1",
        ],
    )
    admin = dir / "admin.kubeconfig"
    kubectl = [str(bin / "kubectl"), f"--kubeconfig={admin}"]

    def api_ready() -> bool:
        out = subprocess.run([*kubectl, "get", "--raw=/readyz"], capture_output=True, check=False)
        return out.returncode == 0

    wait_for("kube-apiserver", api_ready, dir)
    launcher.start(
        "kube-controller-manager",
        [
            str(bin / "kube-controller-manager"),
            f"--kubeconfig={dir / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={dir / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={dir / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.controller_manager}",
            f"--cert-dir={dir / 'controller-manager-certs'}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            # No kubelet heartbeats here: the node agent keeps its Node Ready itself and the
            # lifecycle controller would otherwise evict every pod after five minutes.
            "--controllers=*,-nodelifecycle,-nodeipam,-cloud-node-lifecycle,-service,-route",
            "--concurrent-job-syncs=10",
            "--v=1",
        ],
    )
    launcher.start(
        "node-agent",
        [
            sys.executable,
            "-m",
            "tests.harness.agent",
            f"--kubeconfig={dir / 'agent.kubeconfig'}",
            f"--state={dir / 'pods'}",
            f"--slots={agent_slots}",
            f"--log-port={ports.kubelet}",
            f"--tls-cert={pki.cert('kubelet')}",
            f"--tls-key={pki.key('kubelet')}",
            f"--client-ca={pki.ca}",
            f"--log-client={KUBELET_CLIENT}",
        ],
        env={"PYTHONPATH": str(ROOT)},
    )
    start_prometheus(dir, ports.prometheus, ports.pushgateway)
    wait_for("pushgateway", _http_ok(f"http://127.0.0.1:{ports.pushgateway}/-/ready"), dir)

    def default_sa() -> bool:
        out = subprocess.run(
            [*kubectl, "get", "serviceaccount", "default", "-n", "default"],
            capture_output=True,
            check=False,
        )
        return out.returncode == 0

    wait_for("the default service account", default_sa, dir)
    wait_for("the test node", lambda: _node_ready(kubectl), dir)


def _node_ready(kubectl: list[str]) -> bool:
    out = subprocess.run(
        [
            *kubectl,
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.returncode == 0 and "True" in out.stdout


def recorded(dir: Path) -> list[tuple[str, int, str]]:
    path = dir / "pids"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        name, pid, exe = line.split()
        rows.append((name, int(pid), exe))
    return rows


def _is_ours(pid: int, exe: str) -> bool:
    """The pid still runs the program we started (pids are reused after exit)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return Path(argv0.decode(errors="replace")).name == exe


def stop(dir: Path, name: str, timeout: float = 10.0) -> None:
    """Stop one recorded daemon (and its process group), then forget it."""
    rows = recorded(dir)
    for row_name, pid, exe in rows:
        if row_name == name:
            _terminate(pid, exe, timeout)
    keep = [r for r in rows if r[0] != name]
    (dir / "pids").write_text("".join(f"{n} {p} {e}\n" for n, p, e in keep))


def _terminate(pid: int, exe: str, timeout: float) -> None:
    if not _is_ours(pid, exe):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while _alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def down(dir: Path) -> None:
    """Stop what up started, in reverse order; the agent first so pods die with it."""
    dir = dir.resolve()
    rows = recorded(dir)
    order = sorted(rows, key=lambda r: (r[0] != "node-agent",), reverse=False)
    for _, pid, exe in [*order[:1], *reversed(order[1:])]:
        _terminate(pid, exe, 10.0)
    (dir / "pids").unlink(missing_ok=True)
