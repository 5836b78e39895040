"""`Kube.emit` folds Events before they reach the API (issue 40, item 6): the requests it
sends, seen by a real HTTP server through the official client (no API server needed)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from scalingstudy.cluster.kube import Kube
from scalingstudy.cluster.manifests import StudyRef
from scalingstudy.cluster.reasons import Event, EventReason
from scalingstudy.cluster.study_events import TrialsEvent

STUDY = StudyRef("s", "ns", "uid-1")


class Recorder(BaseHTTPRequestHandler):
    posted: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.posted.append({"path": self.path, **json.loads(body)})
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[Kube, list[dict[str, Any]]]]:
    posted: list[dict[str, Any]] = []
    handler = type("Handler", (Recorder,), {"posted": posted})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield Kube(client.ApiClient(config)), posted
    finally:
        server.shutdown()


def test_progress_events_of_many_passes_are_one_request_until_the_study_ends(
    api: tuple[Kube, list[dict[str, Any]]],
) -> None:
    """Before: one POST per Event, two a pass. Now the passes' TrialsStarted are one
    Event until the study's end writes what was held (with its count), then its own."""
    kube, posted = api
    for i in range(20):
        kube.emit(STUDY, TrialsEvent.of("Normal", EventReason.TRIALS_STARTED, [f"s-{i}"]), "t0")
        kube.flush_events(STUDY)  # nothing is due within the window
    assert [e["message"] for e in posted] == ["started 1 trial: s-0"]
    kube.emit(STUDY, Event("Normal", EventReason.STUDY_SUCCEEDED, "all trials finished"), "t9")
    assert [(e["reason"], e["count"]) for e in posted] == [
        ("TrialsStarted", 1), ("TrialsStarted", 19), ("StudySucceeded", 1)
    ]  # fmt: skip
    assert posted[1]["message"].startswith("started 19 trials: s-1, s-2")
    assert posted[1]["message"].endswith("and 9 more")
    assert all(e["path"] == "/api/v1/namespaces/ns/events" for e in posted)
    assert all(e["involvedObject"]["uid"] == "uid-1" for e in posted)
    assert kube.requests["POST"] == 3


def test_an_operator_that_stops_writes_what_it_held(
    api: tuple[Kube, list[dict[str, Any]]],
) -> None:
    """A rollout or SIGTERM ends the process: what the window held is written on the way
    out, not lost with it (review of issue 40)."""
    kube, posted = api
    for i in range(3):
        kube.emit(STUDY, TrialsEvent.of("Normal", EventReason.TRIALS_SUCCEEDED, [f"s-{i}"]), "t")
    assert len(posted) == 1
    kube.flush_all_events()
    assert [(e["reason"], e["count"]) for e in posted] == [
        ("TrialsSucceeded", 1), ("TrialsSucceeded", 2)
    ]  # fmt: skip
    kube.flush_all_events()
    assert len(posted) == 2  # written once


def test_a_forgotten_study_holds_nothing(api: tuple[Kube, list[dict[str, Any]]]) -> None:
    kube, posted = api
    kube.emit(STUDY, TrialsEvent.of("Normal", EventReason.TRIALS_STARTED, ["a"]), "t0")
    kube.emit(STUDY, TrialsEvent.of("Normal", EventReason.TRIALS_STARTED, ["b"]), "t1")
    kube.forget_events("ns", "s")
    kube.emit(STUDY, Event("Normal", EventReason.STUDY_SUCCEEDED, "done"), "t2")
    assert [e["reason"] for e in posted] == ["TrialsStarted", "StudySucceeded"]
