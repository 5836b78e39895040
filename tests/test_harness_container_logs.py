"""The test node agent's container-log endpoint selects what a kubelet would."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.harness.container_logs import (
    BadRequestError,
    ContainerLog,
    LogOptions,
    follow,
    parse_options,
    select,
)


def _log() -> bytes:
    lines = [json.dumps({"ts": 100.0 + i, "event": "eval", "step": i}) for i in range(5)]
    return ("\n".join([*lines, "plain line after the last eval"]) + "\n").encode()


def test_tail_lines_are_the_last_lines() -> None:
    out = select(_log(), LogOptions(tail_lines=2), started=99.0, now=200.0).decode()
    assert out.splitlines() == ['{"ts": 104.0, "event": "eval", "step": 4}',
                                "plain line after the last eval"]  # fmt: skip
    assert select(_log(), LogOptions(tail_lines=0), 99.0, 200.0) == b""


def test_limit_bytes_cuts_from_the_start_after_the_tail() -> None:
    out = select(_log(), LogOptions(tail_lines=1, limit_bytes=5), 99.0, 200.0)
    assert out == b"plain"


def test_since_seconds_keeps_lines_by_their_json_time() -> None:
    """A plain line takes the time of the JSON line before it."""
    out = select(_log(), LogOptions(since_seconds=2), started=99.0, now=105.0).decode()
    assert [line[:12] for line in out.splitlines()] == ['{"ts": 103.0', '{"ts": 104.0',
                                                        "plain line a"]  # fmt: skip


def test_options_as_the_kubelet_parses_them() -> None:
    assert parse_options({"tailLines": ["3"], "follow": ["true"]}) == LogOptions(
        tail_lines=3, follow=True
    )
    with pytest.raises(BadRequestError):
        parse_options({"limitBytes": ["0"]})
    with pytest.raises(BadRequestError):
        parse_options({"timestamps": ["true"]})


def test_follow_streams_what_is_written_while_the_container_runs(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"first\n")
    polls = iter([True, True, False])

    def running() -> bool:  # the container writes a line between polls, then ends
        alive = next(polls)
        if alive:
            path.write_bytes(path.read_bytes() + b"more\n")
        return alive

    out = io.BytesIO()
    follow(ContainerLog("c", path, 0.0, running), out, sent=6, limit=None, written=6)
    assert out.getvalue() == b"more\nmore\n"
    out = io.BytesIO()
    path.write_bytes(b"first\n")
    polls = iter([True, True, False])
    follow(ContainerLog("c", path, 0.0, running), out, sent=6, limit=9, written=6)
    assert out.getvalue() == b"mor"  # limitBytes counts what was sent before
