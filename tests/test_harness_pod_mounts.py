"""The test node agent's fixed-path mounts (tests/harness/pod_mounts.py): a pod's process
reads its service account where every in-cluster client looks, and this machine's own
folders are left as they were."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

from tests.harness.pod_mounts import (
    SERVICE_ACCOUNT_DIR,
    FixedMount,
    holds_token,
    namespace_script,
    token_request,
)
from tests.harness.service_proxy import NAMES, bind_service_address, hosts_line, serve


def test_a_process_reads_the_service_account_at_the_fixed_path(tmp_path: Path) -> None:
    volume = tmp_path / "kube-api-access"
    volume.mkdir()
    (volume / "token").write_text("a-bound-token")
    (volume / "namespace").write_text("lab")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost trainer-0.trainer\n")
    prefix = namespace_script(hosts, [FixedMount(volume, SERVICE_ACCOUNT_DIR)], tmp_path / "pod")
    script = f"cat {SERVICE_ACCOUNT_DIR}/token {SERVICE_ACCOUNT_DIR}/namespace /etc/hosts; ls /run"
    out = subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True,
                         check=False, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("a-bound-tokenlab127.0.0.1 localhost trainer-0.trainer\n")
    # The rest of /run is still there for the process (an overlay, not a fresh folder)...
    here = {p.name for p in Path("/run").iterdir()}
    assert here <= set(out.stdout.splitlines()[1:]), out.stdout
    # ... and this machine's /run never got the folder.
    assert not Path(SERVICE_ACCOUNT_DIR).exists()


def test_nothing_to_mount_runs_the_command_as_it_is(tmp_path: Path) -> None:
    assert namespace_script(None, [], tmp_path) == []


def test_the_token_request_is_bound_to_the_pod_with_the_projections_audience() -> None:
    pod = {"metadata": {"name": "op-1", "uid": "u-1", "namespace": "ns"}}
    body = token_request(pod, {"path": "token", "expirationSeconds": 3607})
    assert body["spec"] == {
        "audiences": [],
        "expirationSeconds": 3607,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "op-1", "uid": "u-1"},
    }
    assert token_request(pod, {"path": "t", "audience": "vault"})["spec"]["audiences"] == ["vault"]


def test_only_a_projection_with_a_token_is_the_service_accounts() -> None:
    token = {"serviceAccountToken": {"path": "token"}}
    assert holds_token({"projected": {"sources": [{"configMap": {"name": "x"}}, token]}})
    assert not holds_token({"projected": {"sources": [{"configMap": {"name": "x"}}]}})
    assert not holds_token({"emptyDir": {}})


def test_the_kubernetes_service_relay_forwards_both_ways() -> None:
    """kube-proxy's part: a connection to port 443 of the relay's address reaches the
    API server's (here an echo server's) port, bytes untouched, both ways."""
    upstream = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = upstream.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    server = bind_service_address()
    assert server is not None, "the tests run as root here: port 443 is ours to bind"
    serve(server, upstream.getsockname())
    line = hosts_line(server)
    assert line.split()[1:] == list(NAMES) and "kubernetes.default.svc" in NAMES
    with socket.create_connection((line.split()[0], 443), timeout=10) as client:
        client.sendall(b"get /api")
        client.shutdown(socket.SHUT_WR)
        assert client.makefile("rb").read() == b"GET /API"
