"""The built-in trainer as a process: contract in, result out, config errors distinct."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scalingstudy.contract import (
    EXIT_CONFIG_ERROR,
    MICRO_BATCH,
    NORMALISATION_BATCH_CHANGED,
    SCHEDULE_KEYS,
    parse_result,
)
from tests.training import run_trainer


def _run(tmp_path: Path, **overrides: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    result = tmp_path / "result.json"
    env = {
        **os.environ,
        "SCALINGSTUDY_TASK": json.dumps(
            {"name": "teacher-student", "options": {"inputDim": 4, "teacherWidth": 8}}
        ),
        "SCALINGSTUDY_TRAINING": json.dumps({"minSteps": 20, "maxSteps": 40, "evalEvery": 10}),
        "SCALINGSTUDY_DATA_SIZE": "128",
        "SCALINGSTUDY_MODEL_SIZE": "8",
        "SCALINGSTUDY_SEED": "0",
        "SCALINGSTUDY_RESULT_FILE": str(result),
        "OMP_NUM_THREADS": "1",
        **overrides,
    }
    return run_trainer(env, timeout=120), result


def test_trains_and_reports_the_contract_result(tmp_path: Path) -> None:
    proc, result = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    raw = json.loads(result.read_text())
    parsed = parse_result(result.read_text())
    assert parsed.loss == raw["validation_loss"] > 0
    assert raw["parameters"] == 4 * 8 + 8 + 8 * 8 + 8 + 8 + 1
    assert raw["steps"] <= 40 and raw["samples_seen"] == raw["steps"] * 64
    # The schedule it ran (50 epochs of 128 at batch 64, clipped to maxSteps: 40 steps).
    assert {k: raw[k] for k in SCHEDULE_KEYS} == {
        "step_budget": 40, "warmup_steps": 0, "peak_learning_rate": 1e-3,
        "final_learning_rate": 1e-3, "final_learning_rate_ratio": 1.0,
    }  # fmt: skip
    assert raw[MICRO_BATCH] == 64 and NORMALISATION_BATCH_CHANGED not in raw
    events = [json.loads(line)["event"] for line in proc.stdout.splitlines()]
    assert events[0] == "start" and events[-1] == "result" and "eval" in events


def test_a_configuration_error_is_refused_before_torch_loads(tmp_path: Path) -> None:
    """A pod with a bad setting says so at once, not after seconds of importing torch."""
    probe = ("import sys; from scalingstudy_trainer.main import main; "
             "code = main([]); print(code, 'torch' in sys.modules)")  # fmt: skip
    env = {**os.environ, "SCALINGSTUDY_TASK": "{not json", "SCALINGSTUDY_DATA_SIZE": "128",
           "SCALINGSTUDY_MODEL_SIZE": "8",
           "SCALINGSTUDY_RESULT_FILE": str(tmp_path / "r")}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert out.stdout.split() == [str(EXIT_CONFIG_ERROR), "False"], out.stderr
    assert "SCALINGSTUDY_TASK is not valid JSON" in out.stderr


def test_same_seed_same_result(tmp_path: Path) -> None:
    a = json.loads(_run(tmp_path)[1].read_text())
    b = json.loads(_run(tmp_path)[1].read_text())
    assert a["validation_loss"] == b["validation_loss"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"SCALINGSTUDY_TASK": '{"name": "no-such-task"}'}, "unknown task 'no-such-task'"),
        (
            {"SCALINGSTUDY_TASK": '{"name": "teacher-student", "options": {"inputDims": 3}}'},
            "options.inputDims",
        ),
        (
            {"SCALINGSTUDY_TASK": '{"name": "teacher-student", "options": {"noise": -1}}'},
            "options.noise",
        ),
        ({"SCALINGSTUDY_TASK": "{not json"}, "SCALINGSTUDY_TASK is not valid JSON"),
        ({"SCALINGSTUDY_TASK": ""}, "SCALINGSTUDY_TASK is not set"),
        ({"SCALINGSTUDY_DATA_SIZE": "ten"}, "SCALINGSTUDY_DATA_SIZE must be an integer"),
        ({"SCALINGSTUDY_MODEL_SIZE": "0"}, "SCALINGSTUDY_MODEL_SIZE must be >= 1"),
        ({"SCALINGSTUDY_TRAINING": '{"maxSteps": 0}'}, "maxSteps"),
        (
            {"SCALINGSTUDY_TASK": '{"name": "char-lm", "options": {"corpus": "/no/such"}}'},
            "corpus: '/no/such' does not exist",
        ),
        (
            {"SCALINGSTUDY_TASK": '{"name": "char-lm"}', "SCALINGSTUDY_DATA_SIZE": "999999999"},
            "use data sizes up to",
        ),
        (
            {"SCALINGSTUDY_TASK": '{"name": "image-classification", "options": {"model": "vit"}}'},
            "options.model",
        ),
    ],
)
def test_configuration_errors_exit_78_with_one_line(
    tmp_path: Path, overrides: dict[str, str], fragment: str
) -> None:
    proc, result = _run(tmp_path, **overrides)
    assert proc.returncode == EXIT_CONFIG_ERROR
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not result.exists()


def test_task_and_training_are_read_from_the_files_a_config_map_mounts(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "task.json").write_text(
        json.dumps({"name": "teacher-student", "options": {"inputDim": 4, "teacherWidth": 8}})
    )
    (config / "training.json").write_text(json.dumps({"minSteps": 20, "maxSteps": 40}))
    proc, result = _run(
        tmp_path, SCALINGSTUDY_TASK="", SCALINGSTUDY_TRAINING="",
        SCALINGSTUDY_TASK_FILE=str(config / "task.json"),
        SCALINGSTUDY_TRAINING_FILE=str(config / "training.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert parse_result(result.read_text()).steps == 40
    missing = str(config / "nope.json")
    proc, _ = _run(tmp_path, SCALINGSTUDY_TASK_FILE=missing)
    assert proc.returncode == EXIT_CONFIG_ERROR
    assert f"SCALINGSTUDY_TASK_FILE: cannot read {missing}" in proc.stderr
