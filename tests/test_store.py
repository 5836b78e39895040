"""The local result store: a damaged record never stops a resumed run (issue 26 C)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from scalingstudy.local.store import ResultStore


@pytest.mark.parametrize(
    "content",
    ['{"trial": "x"}', "{not json", '["a", "list"]', '{"trial": "y", "status": "Maybe"}'],
)
def test_a_record_that_does_not_parse_is_set_aside_and_its_trial_runs_again(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = ResultStore(tmp_path)
    store.trials_dir.mkdir(parents=True, exist_ok=True)
    damaged = store.trials_dir / "study-d100-m4-s0.json"
    damaged.write_text(content)
    with caplog.at_level(logging.WARNING):
        records = store.load()
    assert records == {}
    assert not damaged.exists()
    assert (store.trials_dir / "study-d100-m4-s0.json.bad").read_text() == content
    assert "study-d100-m4-s0.json" in caplog.text and "runs again" in caplog.text
