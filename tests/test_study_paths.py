"""Relative paths in a study file are read from the study file's folder (issue 39):
`scalingstudy plan /elsewhere/study.yaml` finds the train.py beside it from any directory."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from scalingstudy.local.runner import run_study
from scalingstudy.spec import SpecError, load_study
from scalingstudy.study_paths import path_arguments, resolve_command, with_study_paths
from tests.conftest import run_cli

HERE = Path(__file__).resolve().parent


def _project(tmp_path: Path, command: list[str], args: list[str] | None = None) -> Path:
    """A study folder as a user keeps one: study.yaml beside its train.py (a real trainer
    that honours the contract), and a different folder to run from."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(HERE / "contract_trainer.py", folder / "train.py")
    trainer: dict[str, list[str]] = {"command": command}
    if args is not None:
        trainer["args"] = args
    doc = {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": "beside"},
        "spec": {
            "task": {"name": "known-curve"},
            "trainer": trainer,
            "dataSizes": {"values": [100, 200, 400]},
            "modelSizes": {"values": [2]},
            "fit": {"bootstrap": 0},
        },
    }
    (folder / "study.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "elsewhere").mkdir()
    return folder / "study.yaml"


def test_a_script_beside_the_study_runs_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the command kept 'train.py' and every trial ran it from the current
    directory, where it is not."""
    study_file = _project(tmp_path, ["python", "train.py"])
    monkeypatch.chdir(tmp_path / "elsewhere")
    located = with_study_paths(load_study(study_file), study_file)
    assert located.study.spec.trainer.command == ["python", str(study_file.parent / "train.py")]
    assert located.notes == ()
    outcome = run_study(located.study, tmp_path / "out", workers=1, progress=False)
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert len(rows) == 3 and not outcome.failed_reason


def test_the_script_may_be_in_args(tmp_path: Path) -> None:
    study_file = _project(tmp_path, ["python"], ["train.py", "--flag"])
    located = with_study_paths(load_study(study_file), study_file, tmp_path / "elsewhere")
    trainer = located.study.spec.trainer
    assert trainer.command == ["python"]
    assert trainer.args == [str(study_file.parent / "train.py"), "--flag"]


def test_a_missing_script_names_the_folders_looked_in(tmp_path: Path) -> None:
    study_file = _project(tmp_path, ["python", "trian.py"])
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(SpecError) as raised:
        with_study_paths(load_study(study_file), study_file, elsewhere)
    (problem,) = raised.value.problems
    assert problem.startswith("spec.trainer.command ['python', 'trian.py']: script 'trian.py'")
    assert f"does not exist in {study_file.parent}" in problem
    assert "read from the study file's folder" in problem
    assert f"nor in the current directory {elsewhere}" in problem


def test_a_path_from_the_current_directory_still_works_with_a_note(tmp_path: Path) -> None:
    """The old rule (relative to where scalingstudy runs) keeps working, and says what
    to write instead."""
    study_file = _project(tmp_path, ["python", "project/train.py"])
    located = with_study_paths(load_study(study_file), study_file, tmp_path)
    assert located.study.spec.trainer.command == ["python", "project/train.py"]
    (note,) = located.notes
    assert "found in the current directory" in note and "write 'train.py'" in note


@pytest.mark.parametrize(
    ("command", "indexes"),
    [
        (["python", "train.py", "x.txt"], [1]),
        (["python3.11", "-u", "-X", "dev", "train.py"], [4]),
        (["python", "-m", "pkg.train"], []),
        (["python", "-c", "print(1)"], []),
        (["./run.sh", "train.py"], [0]),
        (["torchrun", "train.py"], []),
        ([sys.executable, "t.py"], [0, 1]),
    ],
)
def test_path_arguments(command: list[str], indexes: list[int]) -> None:
    assert path_arguments(command) == indexes


def test_absolute_paths_and_programs_on_path_are_left_alone(tmp_path: Path) -> None:
    command = [sys.executable, str(HERE / "contract_trainer.py")]
    assert resolve_command(command, tmp_path, tmp_path).command == tuple(command)
    assert resolve_command(["python", "-m", "x"], tmp_path, tmp_path).command == (
        "python",
        "-m",
        "x",
    )


def test_the_cli_plans_a_study_from_another_directory(tmp_path: Path) -> None:
    """`plan` and `run` call with_study_paths after load_study (cli.cmd_run); before,
    plan said "script 'train.py' does not exist" without saying where it looked."""
    study_file = _project(tmp_path, ["python", "train.py"])
    result = run_cli("plan", str(study_file), cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr
