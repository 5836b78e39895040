"""The `kubernetes` Service as a pod reaches it, for the test node agent: kube-proxy's part.

In a cluster, `https://kubernetes.default.svc` (port 443) is the API server: cluster DNS
gives the Service's IP and kube-proxy forwards it to the API server's own address. Some
in-cluster clients use that name and not KUBERNETES_SERVICE_HOST/_PORT (kopf's service-
account login does). Here the API server listens on a random loopback port; this relay
listens on port 443 of a loopback address of its own (127.0.0.0/8 is all loopback, so
two test control planes on one machine take two addresses) and forwards every
connection, bytes untouched (TLS is end to end: the API server's certificate names
kubernetes.default.svc). The agent writes the name into the /etc/hosts of each pod that
mounts a service account, as cluster DNS would answer it.

Port 443 needs root (as the rest of a node does); without it there is no relay and such
a pod sees no `kubernetes.default.svc`, as in a cluster without DNS.

Test-only; nothing here ships in the product.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading

HTTPS = 443
#: The names cluster DNS answers for the `kubernetes` Service (search path included).
NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
         "kubernetes.default.svc.cluster.local")  # fmt: skip


def bind_service_address(tries: int = 50) -> socket.socket | None:
    """A listening socket on port 443 of a random loopback address; None without the
    right to bind it."""
    for _ in range(tries):
        address = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.1"
        try:
            return socket.create_server((address, HTTPS))
        except PermissionError:
            return None
        except OSError:
            continue
    return None


def relay(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction until it ends, then end the other side's writing."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def serve(server: socket.socket, upstream: tuple[str, int]) -> None:
    """Forward each connection on ``server`` to ``upstream`` (in threads, forever)."""

    def connection(client: socket.socket) -> None:
        try:
            backend = socket.create_connection(upstream, timeout=10)
        except OSError:
            client.close()
            return
        backend.settimeout(None)
        there = threading.Thread(target=relay, args=(client, backend), daemon=True)
        there.start()
        relay(backend, client)
        there.join()
        client.close()
        backend.close()

    def accept() -> None:
        while True:
            client, _ = server.accept()
            threading.Thread(target=connection, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True, name="kubernetes-service").start()


def hosts_line(server: socket.socket) -> str:
    """The /etc/hosts line that resolves the Service's names to the relay."""
    return " ".join([server.getsockname()[0], *NAMES])
