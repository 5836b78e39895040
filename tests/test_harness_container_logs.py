"""The test node agent's container-log endpoint selects what a kubelet would."""

from __future__ import annotations

import json

import pytest

from tests.harness.container_logs import BadRequestError, LogOptions, parse_options, select


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
