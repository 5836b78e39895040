"""Preemption loses no work: a SIGTERM'd trial saves a checkpoint and exits 143, the
retry resumes from it and ends where an uninterrupted run ends; a finished trial is
never trained twice; a checkpoint of another trial is never resumed."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from scalingstudy.contract import EXIT_PREEMPTED
from scalingstudy.spec import TrainingSpec
from scalingstudy_trainer.batches import Runtime
from scalingstudy_trainer.checkpoint import STATE_FILE, Checkpoints, Preempted
from scalingstudy_trainer.loop import Trainer, train
from scalingstudy_trainer.tasks.base import Task
from scalingstudy_trainer.tasks.char_lm import CharLM
from scalingstudy_trainer.tasks.teacher_student import TeacherStudent
from tests.training import TRAINER, DivergingTeacherStudent, run_trainer

TRAINING = TrainingSpec.model_validate(
    {"minSteps": 60, "maxSteps": 60, "evalEvery": 10, "batchSize": 16, "learningRate": 3e-3}
)
CPU = Runtime(device=torch.device("cpu"), bf16=False, compile=False)


def quiet(event: str, **fields: Any) -> None:
    pass


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(rng.choice(["ab", "cd", "efg", "h"], size=8000)))
    return path


def tasks(corpus: Path) -> dict[str, Task]:
    return {
        "teacher-student": TeacherStudent({"inputDim": 4, "teacherWidth": 8}, 0),
        "char-lm": CharLM({"corpus": str(corpus), "context": 16, "validationBytes": 2048}, 0),
    }


@pytest.mark.parametrize("name", ["teacher-student", "char-lm"])
@pytest.mark.parametrize("stop_at", [1, 23, 40])
def test_resumed_run_ends_exactly_where_an_uninterrupted_one_does(
    tmp_path: Path, corpus: Path, name: str, stop_at: int
) -> None:
    task = tasks(corpus)[name]
    data_size = 640 if name == "char-lm" else 300
    whole = train(task, data_size, 8, 5, TRAINING, quiet, runtime=CPU)

    checkpoints = Checkpoints(str(tmp_path / "ckpt"), {"trial": name})
    calls = itertools.count()
    with pytest.raises(Preempted):
        train(
            task,
            data_size,
            8,
            5,
            TRAINING,
            quiet,
            checkpoints,
            lambda: next(calls) == stop_at,
            runtime=CPU,
        )
    assert (tmp_path / "ckpt" / STATE_FILE).exists()
    resumed = train(task, data_size, 8, 5, TRAINING, quiet, checkpoints, runtime=CPU)
    assert resumed.resumed_from_step == stop_at
    assert resumed.validation_loss == whole.validation_loss
    assert resumed.train_loss == whole.train_loss
    assert (resumed.steps, resumed.best_step) == (whole.steps, whole.best_step)


def test_checkpoint_of_another_trial_is_not_resumed(tmp_path: Path, corpus: Path) -> None:
    task = tasks(corpus)["teacher-student"]
    mine = Checkpoints(str(tmp_path), {"model_size": 8})
    with pytest.raises(Preempted):
        train(task, 300, 8, 0, TRAINING, quiet, mine, lambda: True, runtime=CPU)
    events: list[tuple[str, dict[str, Any]]] = []
    other = Checkpoints(str(tmp_path), {"model_size": 16})
    outcome = train(
        task, 300, 16, 0, TRAINING, lambda e, **f: events.append((e, f)), other, runtime=CPU
    )
    start = dict(events)["start"]
    assert start["checkpoint"] == "checkpoint of a different trial or setting"
    assert outcome.resumed_from_step == 0 and outcome.steps == 60


def test_periodic_checkpoints_bound_what_a_sigkill_loses(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Besides on SIGTERM, the state is saved at an evaluation once the interval has
    passed (10 minutes in production; zero here so every evaluation saves)."""
    monkeypatch.setattr("scalingstudy_trainer.checkpoint.SAVE_INTERVAL_SECONDS", 0.0)
    events: list[tuple[str, dict[str, Any]]] = []
    checkpoints = Checkpoints(str(tmp_path), {"trial": "periodic"})
    task = tasks(corpus)["teacher-student"]
    train(task, 300, 8, 0, TRAINING, lambda e, **f: events.append((e, f)), checkpoints, runtime=CPU)
    saved_at = [f["step"] for e, f in events if e == "checkpoint"]
    assert saved_at == [10, 20, 30, 40, 50, 60]
    state, why = checkpoints.load()
    assert why == "resumed" and state is not None and state["step"] == 60


def test_micro_batches_accumulate_to_the_full_batch_gradient(corpus: Path) -> None:
    task = tasks(corpus)["teacher-student"]
    runs = []
    for chunks in (1, 7):  # the whole batch at once, then in 7 micro-batches
        trainer = Trainer(task, 300, 8, 0, TRAINING, CPU)
        trainer.chunks = chunks
        assert chunks == 1 or trainer.micro_batch < trainer.batch_size
        for _ in range(5):
            trainer.advance()
        runs.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert torch.allclose(runs[0], runs[1], atol=1e-6)


class OutOfMemoryAbove(TeacherStudent):
    """A GPU running out of memory cannot be produced on a CPU: this task fails (with the
    exception torch raises then) whenever a forward pass gets more than 4 examples."""

    def loss(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Any:
        if model.training and inputs.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().loss(model, inputs, targets)


def test_out_of_memory_halves_the_micro_batch_not_the_batch() -> None:
    options = {"inputDim": 4, "teacherWidth": 8}
    plain = train(TeacherStudent(options, 0), 300, 8, 0, TRAINING, quiet, runtime=CPU)
    trainer = Trainer(OutOfMemoryAbove(options, 0), 300, 8, 0, TRAINING, CPU)
    squeezed = trainer.run(quiet, Checkpoints("", {}), lambda: False)
    assert trainer.micro_batch == 4 and squeezed.batch_size == 16
    assert squeezed.validation_loss == pytest.approx(plain.validation_loss, rel=1e-4)


class BatchNormOutOfMemory(TeacherStudent):
    """A BatchNorm model on a card whose memory holds micro-batches of at most ``fits``
    items (a stand-in: a CPU cannot be made to run out of memory; None: a card where the
    whole batch fits)."""

    fits: int | None = 8

    def build_model(self, model_size: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Linear(4, model_size), torch.nn.BatchNorm1d(model_size), torch.nn.ReLU(),
            torch.nn.Linear(model_size, 1),
        )  # fmt: skip

    def loss(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Any:
        if model.training and self.fits is not None and inputs.shape[0] > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().loss(model, inputs, targets)


def test_a_resume_on_a_larger_card_keeps_the_cut_the_trial_ran_with(tmp_path: Path) -> None:
    """A BatchNorm trial that ran out of memory, was preempted and resumed where its whole
    batch fits used to report normalisation_batch_changed false and train its remaining
    steps at another normalisation batch: the cut is part of the trial's state."""
    options = {"inputDim": 4, "teacherWidth": 8}
    whole = train(BatchNormOutOfMemory(options, 0), 300, 8, 5, TRAINING, quiet, runtime=CPU)
    assert whole.normalisation_batch_changed and whole.micro_batch == 8
    checkpoints = Checkpoints(str(tmp_path / "ckpt"), {"trial": "bn"})
    calls = itertools.count()
    with pytest.raises(Preempted):
        train(BatchNormOutOfMemory(options, 0), 300, 8, 5, TRAINING, quiet, checkpoints,
              lambda: next(calls) == 23, runtime=CPU)  # fmt: skip
    larger = BatchNormOutOfMemory(options, 0)
    larger.fits = None
    resumed = train(larger, 300, 8, 5, TRAINING, quiet, checkpoints, runtime=CPU)
    assert resumed.resumed_from_step == 23
    assert resumed.normalisation_batch_changed and resumed.micro_batch == 8
    assert resumed.validation_loss == whole.validation_loss


def _nan_from_step_25(options: dict[str, Any]) -> DivergingTeacherStudent:
    task = DivergingTeacherStudent(options, 0)
    task.nan_from = 24
    return task


def test_a_resume_after_the_loss_went_nan_reports_the_step_it_did(tmp_path: Path) -> None:
    """NaN at step 25, preempted at 27, resumed: the first NaN step used to be forgotten,
    and the result said the evaluation's step (30)."""
    options = {"inputDim": 4, "teacherWidth": 8}
    whole = train(_nan_from_step_25(options), 300, 8, 5, TRAINING, quiet, runtime=CPU)
    assert whole.diverged_at_step == 25
    checkpoints = Checkpoints(str(tmp_path / "ckpt"), {"trial": "nan"})
    calls = itertools.count()
    with pytest.raises(Preempted):
        train(_nan_from_step_25(options), 300, 8, 5, TRAINING, quiet, checkpoints,
              lambda: next(calls) == 27, runtime=CPU)  # fmt: skip
    resumed = train(
        _nan_from_step_25(options), 300, 8, 5, TRAINING, quiet, checkpoints, runtime=CPU
    )
    assert resumed.resumed_from_step == 27
    assert resumed.diverged_at_step == 25
    assert (resumed.validation_loss, resumed.best_step) == (whole.validation_loss, whole.best_step)


# ---------------------------------------------------------------------- the real process


def _env(tmp_path: Path, checkpoint_dir: str, result: str) -> dict[str, str]:
    return {
        **os.environ,
        "SCALINGSTUDY_TASK": json.dumps(
            {"name": "teacher-student", "options": {"inputDim": 8, "teacherWidth": 16}}
        ),
        "SCALINGSTUDY_TRAINING": json.dumps(
            {
                "minSteps": 3000,
                "maxSteps": 3000,
                "evalEvery": 20,
                "batchSize": 32,
                "earlyStopping": {"patience": 1000},
            }
        ),
        "SCALINGSTUDY_DATA_SIZE": "512",
        "SCALINGSTUDY_MODEL_SIZE": "16",
        "SCALINGSTUDY_SEED": "1",
        "SCALINGSTUDY_RESULT_FILE": str(tmp_path / result),
        "SCALINGSTUDY_CHECKPOINT_DIR": checkpoint_dir,
        "OMP_NUM_THREADS": "1",
    }


def _trainer(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        TRAINER,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow(40)
def test_sigterm_saves_exits_143_and_the_retry_finishes_the_same(tmp_path: Path) -> None:
    ckpt = str(tmp_path / "ckpt")
    proc = _trainer(_env(tmp_path, ckpt, "preempted.json"))
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until it is well into training
        if json.loads(line).get("step", 0) >= 200:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err
    saved = [e for e in _events(out) if e["event"] == "preempted"]
    assert saved and saved[0]["checkpoint_saved"] is True and saved[0]["step"] >= 200
    assert not (tmp_path / "preempted.json").exists()

    retry = run_trainer(_env(tmp_path, ckpt, "retry.json"))
    assert retry.returncode == 0, retry.stderr
    start = next(e for e in _events(retry.stdout) if e["event"] == "start")
    assert start["resumed_from_step"] == saved[0]["step"]

    whole = run_trainer(_env(tmp_path, "", "whole.json"))
    resumed = json.loads((tmp_path / "retry.json").read_text())
    uninterrupted = json.loads((tmp_path / "whole.json").read_text())
    assert resumed["validation_loss"] == uninterrupted["validation_loss"]
    assert resumed["steps"] == uninterrupted["steps"] == 3000
    assert resumed["resumed_from_step"] == saved[0]["step"]

    # A pod that died after finishing: the next attempt reports the kept result at once.
    again = run_trainer(_env(tmp_path, ckpt, "again.json"))
    assert again.returncode == 0
    assert [e["event"] for e in _events(again.stdout)] == ["finished_before", "result"]
    assert json.loads((tmp_path / "again.json").read_text()) == resumed
    assert whole.returncode == 0
