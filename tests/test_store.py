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


def _study_doc(tmp_path: Path, **training: object) -> Path:
    import sys

    import yaml

    here = Path(__file__).resolve().parent
    doc = {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": "locked"},
        "spec": {
            "task": {"name": "known-curve"},
            "trainer": {"command": [sys.executable, str(here / "contract_trainer.py")],
                        "env": [{"name": "CALLS_LOG", "value": str(tmp_path / "calls.log")},
                                {"name": "TRIAL_SECONDS", "value": "0.3"}]},
            "dataSizes": {"values": [100, 200, 400]},
            "modelSizes": {"values": [2, 4]},
            "training": training,
            "fit": {"bootstrap": 0},
        },
    }  # fmt: skip
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_refused_resume_names_the_changed_fields_and_plan_refuses_the_same(
    tmp_path: Path,
) -> None:
    """`plan` used to say "15 succeeded ... 1 more planned" where `run` then refused, and
    the refusal did not say what had changed."""
    from scalingstudy.local.runner import plan_study
    from scalingstudy.local.store import StoreError
    from scalingstudy.spec import load_study
    from tests.conftest import run_cli

    out = tmp_path / "out"
    first = run_cli("run", str(_study_doc(tmp_path, learningRate=0.003)), "--out", str(out))
    assert first.returncode == 0, first.stderr
    changed = _study_doc(tmp_path, learningRate=0.01)
    refused = run_cli("run", str(changed), "--out", str(out))
    assert refused.returncode == 2
    assert "spec.training.learningRate: 0.003 -> 0.01" in refused.stderr, refused.stderr
    with pytest.raises(StoreError) as planned:
        plan_study(load_study(changed), out)
    assert str(planned.value) in refused.stderr  # the very refusal run gives
    # unchanged: the plan says what a resume does
    lines = plan_study(load_study(_study_doc(tmp_path, learningRate=0.003)), out)
    assert "starts nothing: every planned trial has a result" in lines


def test_setup_changes_name_every_field_and_the_study_name() -> None:
    from scalingstudy.local.store import setup_changes

    old = {"study": "a", "identity": {"task": {"name": "t", "options": {"k": 1}},
                                      "training": {"learningRate": 0.1}}}  # fmt: skip
    new = {"study": "b", "identity": {"task": {"name": "t", "options": {"k": 2, "j": [1]}},
                                      "training": {"learningRate": 0.1}}}  # fmt: skip
    assert setup_changes(old, new) == [
        'metadata.name: "a" -> "b"',
        "spec.task.options.j: (unset) -> [1]",
        "spec.task.options.k: 1 -> 2",
    ]
    assert setup_changes(new, new) == []


def test_a_second_run_on_the_same_output_is_refused_naming_the_first(tmp_path: Path) -> None:
    """Two runs on one --out used to train the same trials (and one recorded a false
    failure); a killed run's lock is taken over by the next run."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import run_cli

    out, path = tmp_path / "out", _study_doc(tmp_path)
    cmd = [sys.executable, "-m", "scalingstudy.cli", "run", str(path), "--out", str(out),
           "--quiet", "--workers", "1"]  # fmt: skip
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        calls = tmp_path / "calls.log"
        deadline = time.monotonic() + 120
        while not calls.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the first run holds the lock and trains
        from scalingstudy.local.store import ResultStore

        busy = ResultStore(out).in_use()
        assert busy is not None and f"pid {first.pid}, started " in busy
        second = run_cli("run", str(path), "--out", str(out), "--quiet")
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {first.pid}, started " in lines[0], second.stderr
        held = json.loads((out / "run.lock").read_text())
        assert held["pid"] == first.pid
        first.send_signal(signal.SIGKILL)  # dies holding the lock
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert ResultStore(out).in_use() is None  # the kernel released it with the process
    done = {p.stem for p in (out / "trials").glob("*.json")}
    before = calls.read_text().split()
    assert len(done) < 6  # it was killed while training
    third = run_cli("run", str(path), "--out", str(out), "--quiet")
    assert third.returncode == 0, third.stderr
    now = calls.read_text().split()[len(before) :]
    assert len(now) == len(set(now))  # each missing trial once
    assert set(now).isdisjoint(done)  # nothing recorded is trained again
    assert len(done | set(now)) == 6 and len((out / "results.csv").read_text().splitlines()) == 7
