"""The kubelet's container-log endpoint, served by the test node agent.

On a real cluster `kubectl logs` and `GET /api/v1/namespaces/{ns}/pods/{pod}/log` are
answered by the API server, which proxies the request to the kubelet of the pod's node
(`https://<node address>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/{ns}/{pod}/
{container}`) over TLS, presenting its kubelet client certificate. The operator reads a
trial's curve from its pod's log this way (the one channel only the pod writes), so the
test control plane must serve it the same way: this module is that endpoint, for the log
files the agent writes (one per pod, the container's stdout and stderr).

Query parameters as the kubelet takes them: ``tailLines`` (the last N lines),
``limitBytes`` (at most N bytes of what is selected, from its start), ``sinceSeconds``
(lines written in the last N seconds) and ``follow`` (keep streaming while the container
runs). The agent keeps no per-line timestamps: a line's time is the ``ts`` of the last
JSON line at or before it (what trainers print), else the container's start; and
``timestamps`` is not supported (answered 400, so no caller relies on it unknowingly).
Test-only.
"""

from __future__ import annotations

import io
import json
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

#: How often a followed log is read again for new lines.
FOLLOW_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class ContainerLog:
    """Where a pod's container writes, and since when (epoch seconds)."""

    container: str
    path: Path
    started: float
    running: Callable[[], bool]


@dataclass(frozen=True)
class LogOptions:
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_seconds: int | None = None
    follow: bool = False


class BadRequestError(ValueError):
    """A query the kubelet would refuse (400)."""


def _count(query: Mapping[str, list[str]], key: str, least: int) -> int | None:
    if key not in query:
        return None
    try:
        value = int(query[key][-1])
    except ValueError as exc:
        raise BadRequestError(f"{key} must be an integer") from exc
    if value < least:
        raise BadRequestError(f"{key} must be at least {least}")
    return value


def parse_options(query: Mapping[str, list[str]]) -> LogOptions:
    """The kubelet's log options from a query string (parsed by `parse_qs`)."""
    if query.get("timestamps", ["false"])[-1] == "true":
        raise BadRequestError("timestamps are not supported by the test node agent")
    return LogOptions(
        tail_lines=_count(query, "tailLines", 0),
        limit_bytes=_count(query, "limitBytes", 1),
        since_seconds=_count(query, "sinceSeconds", 1),
        follow=query.get("follow", ["false"])[-1] == "true",
    )


def _line_time(line: bytes, previous: float) -> float:
    if not line.startswith(b"{"):
        return previous
    try:
        ts = json.loads(line).get("ts")
    except (ValueError, AttributeError):
        return previous
    return float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else previous


def select(data: bytes, options: LogOptions, started: float, now: float) -> bytes:
    """What the kubelet returns of a log: lines since ``now - sinceSeconds``, then the
    last ``tailLines`` of them, then the first ``limitBytes`` of that."""
    lines = data.splitlines(keepends=True)
    if options.since_seconds is not None:
        cutoff, at, kept = now - options.since_seconds, started, []
        for line in lines:
            at = _line_time(line, at)
            if at >= cutoff:
                kept.append(line)
        lines = kept
    if options.tail_lines is not None:
        lines = lines[len(lines) - options.tail_lines :] if options.tail_lines else []
    out = b"".join(lines)
    return out if options.limit_bytes is None else out[: options.limit_bytes]


Finder = Callable[[str, str], ContainerLog | None]


def _handler(find: Finder, clients: frozenset[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return  # the agent's own log stays about pods

        def _text(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            peer = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else {}
            names = {
                v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"
            }
            if clients and not names & clients:
                self._text(403, f"forbidden: {sorted(names)} may not read container logs")
                return
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            if len(parts) != 4 or parts[0] != "containerLogs":
                self._text(404, f"not found: {url.path}")
                return
            _, namespace, pod, container = parts
            try:
                options = parse_options(parse_qs(url.query))
            except BadRequestError as exc:
                self._text(400, str(exc))
                return
            log = find(namespace, pod)
            if log is None:
                self._text(404, f'pod "{pod}" in namespace "{namespace}" is not on this node')
                return
            if container != log.container:
                self._text(400, f"container {container} is not valid for pod {pod}")
                return
            self._send(log, options)

        def _send(self, log: ContainerLog, options: LogOptions) -> None:
            data = log.path.read_bytes() if log.path.exists() else b""
            out = select(data, options, log.started, time.time())
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if not options.follow:
                self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            if options.follow:
                follow(log, self.wfile, len(data), options.limit_bytes, len(out))

    return Handler


def follow(
    log: ContainerLog, out: io.BufferedIOBase, sent: int, limit: int | None, written: int
) -> None:
    """Stream what the container writes after the first ``sent`` bytes while it runs
    (``kubectl logs -f``), within ``limitBytes`` of ``written`` so far."""
    budget = None if limit is None else limit - written
    while log.running() and (budget is None or budget > 0):
        time.sleep(FOLLOW_POLL_SECONDS)
        more = log.path.read_bytes()[sent:]
        sent += len(more)
        chunk = more if budget is None else more[:budget]
        budget = None if budget is None else budget - len(chunk)
        if chunk:
            out.write(chunk)
            out.flush()


def serve(
    port: int, cert: Path, key: Path, ca: Path, find: Finder, clients: frozenset[str] = frozenset()
) -> ThreadingHTTPServer:
    """Serve container logs on 127.0.0.1:``port`` over TLS in a daemon thread. A client
    must present a certificate of ``ca`` (the API server's kubelet client certificate)
    and, when ``clients`` is given, one of those common names: as a kubelet authorises
    the API server and not whoever can reach its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(find, clients))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="container-logs", daemon=True).start()
    return server
