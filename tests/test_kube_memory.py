"""What the operator holds while it talks to the API (issue 40, item 6: resident memory at
1,000 trials). Seen through the official client against a real HTTP server that answers
as the API server does (pages with a continue token); no API server needed."""

from __future__ import annotations

import json
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from scalingstudy.cluster.kube import LIST_PAGE, METADATA_ONLY, Kube

PAGES = 3


def job(i: int) -> dict[str, Any]:
    """A Job about the size of a real trial's (9 KB, half of it managedFields)."""
    fields = {f"f:field{k}": {"f:value": {}, "f:other": {}} for k in range(60)}
    return {
        "metadata": {"name": f"s-{i}", "uid": f"u-{i}", "resourceVersion": str(i),
                     "labels": {"scalingstudy.io/study": "s"},
                     "managedFields": [{"manager": "m", "operation": "Update",
                                        "fieldsV1": fields}]},
        "spec": {"template": {"spec": {"containers": [{"name": "t", "env": [
            {"name": f"E{k}", "value": "x" * 20} for k in range(40)]}]}}},
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }  # fmt: skip


def page(number: int) -> bytes:
    items = [job(number * LIST_PAGE + i) for i in range(LIST_PAGE)]
    more = {"continue": str(number + 1)} if number + 1 < PAGES else {}
    return json.dumps({"metadata": more, "items": items}).encode()


class Server(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str]]
    #: The pages, made before any is asked for: the server (in this process) allocates
    #: nothing while the client's memory is measured.
    pages: list[bytes]

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, self.headers["Accept"]))
        number = int(parse_qs(urlparse(self.path).query).get("continue", ["0"])[0])
        self._answer(200, self.pages[number])

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("POST", self.path, self.headers["Accept"]))
        self._answer(201, b'{"metadata": {"name": "x", "resourceVersion": "7"}}')

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("PATCH", self.path, self.headers["Accept"]))
        self._answer(200, b'{"metadata": {"name": "s", "resourceVersion": "8"}}')

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[Kube, list[tuple[str, str, str]]]]:
    seen: list[tuple[str, str, str]] = []
    answers = {"seen": seen, "pages": [page(n) for n in range(PAGES)]}
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Server,), answers))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield Kube(client.ApiClient(config)), seen
    finally:
        server.shutdown()


def peak_of(read: Callable[[], object]) -> int:
    """The most Python memory held while ``read`` runs (tracemalloc: no clock involved)."""
    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_listing_jobs_holds_one_page_at_a_time(api: tuple[Kube, Any]) -> None:
    """The previous page was held while the next was read and parsed: two pages at the
    peak (with 250 Jobs a page, 18 MB of a pass at 1,000 trials). Now a list of three
    pages holds about what reading one page holds."""
    kube, seen = api
    one = peak_of(lambda: kube.request("GET", "/apis/batch/v1/namespaces/ns/jobs"))
    names: list[str] = []
    listed = peak_of(lambda: names.extend(j["metadata"]["name"]
                                          for j in kube.list_jobs("ns", "study=s")))  # fmt: skip
    assert len(names) == PAGES * LIST_PAGE and len(seen) == 1 + PAGES
    assert listed < 1.3 * one, (listed, one)


def test_managed_fields_are_dropped_as_each_object_is_parsed(api: tuple[Kube, Any]) -> None:
    """Half of a Job's JSON is managedFields, which the operator never reads: a page of
    Jobs read takes less than the same page parsed whole."""
    kube, _ = api
    whole = peak_of(lambda: json.loads(page(0)))
    held: list[Any] = []
    read = peak_of(lambda: held.append(kube.request("GET", "/apis/batch/v1/namespaces/ns/jobs")))
    jobs = held[0][1]["items"]
    assert len(jobs) == LIST_PAGE and all("managedFields" not in j["metadata"] for j in jobs)
    assert jobs[0]["spec"] == job(0)["spec"] and jobs[0]["status"] == job(0)["status"]
    assert read < 0.75 * whole, (read, whole)


def test_a_users_own_key_named_managed_fields_is_data_and_stays() -> None:
    """Only an object's metadata loses its managedFields: a task option, affinity or volume
    attribute of that name is the user's (review of issue 40)."""
    from scalingstudy.cluster.kube import _without_managed_fields

    raw = json.dumps({"metadata": {"uid": "u", "managedFields": [{"manager": "m",
                                                                  "operation": "Apply"}]},
                      "data": {"task.json": "{}"},
                      "spec": {"options": {"managedFields": ["mine"]},
                               "volume": {"uid": "v", "managedFields": [{"k": 1}]}}})  # fmt: skip
    obj = json.loads(raw, object_hook=_without_managed_fields)
    assert "managedFields" not in obj["metadata"]
    assert obj["spec"]["options"]["managedFields"] == ["mine"]
    assert obj["spec"]["volume"]["managedFields"] == [{"k": 1}]


def test_writes_ask_for_metadata_alone_in_their_answer(api: tuple[Kube, Any]) -> None:
    """A status write's answer was the whole study, parsed to read its resourceVersion."""
    kube, seen = api
    version = kube.patch_study_status("ns", "s", {"phase": "Running"}, "uid", "6")
    assert version == "8"
    assert kube.create_job({"metadata": {"namespace": "ns", "name": "s-0"}}) is None
    assert [(verb, accept) for verb, _, accept in seen] == [
        ("PATCH", METADATA_ONLY), ("POST", METADATA_ONLY)
    ]  # fmt: skip
