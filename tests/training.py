"""Helpers of the trainer tests: the built-in trainer as a process, and a few plain
optimiser steps that show a task's loss and model can learn."""

from __future__ import annotations

import atexit
import functools
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from scalingstudy.local.processes import warm_starter_for
from scalingstudy.local.warm import WarmStarter
from scalingstudy_trainer.tasks.base import Task
from scalingstudy_trainer.tasks.teacher_student import TeacherStudent


class DivergingTeacherStudent(TeacherStudent):
    """A stand-in for a run that diverges (a fault a small CPU run does not produce
    reliably): after ``nan_from`` finite training losses every one is NaN; with
    ``only_rank`` set, only on that process (``rank``: the process this one is)."""

    nan_from = 0
    only_rank: int | None = None
    rank = 0

    def __init__(self, options: dict[str, Any], data_seed: int) -> None:
        super().__init__(options, data_seed)
        self.calls = 0

    def loss(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Any:
        loss = super().loss(model, inputs, targets)
        if model.training and self.only_rank in (None, self.rank):
            self.calls += 1
            if self.calls > self.nan_from:
                return loss * float("nan")
        return loss


def descend(
    task: Task, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float
) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = task.loss(model, x, y)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()


TRAINER = [sys.executable, "-m", "scalingstudy_trainer"]


@functools.cache
def _warm_starter() -> WarmStarter | None:
    """One warm process per test worker, where trials can be forked (``local.warm``)."""
    starter = warm_starter_for(TRAINER)
    if starter is not None:
        atexit.register(starter.close)
    return starter


def run_trainer(env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The built-in trainer as ``scalingstudy run`` starts it: forked from a warm process
    (saving each call torch's imports) where the machine allows, else fresh; ``env`` is
    its whole environment. Exit status, stdout log, stderr. Tests that need a fresh
    interpreter, as in a pod, start ``TRAINER`` themselves."""
    starter = _warm_starter()
    if starter is None:
        return subprocess.run(
            TRAINER, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    with tempfile.TemporaryDirectory() as logs:
        stdout, stderr = Path(logs) / "stdout", Path(logs) / "stderr"
        process = starter.start([], env, stdout, stderr)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        return subprocess.CompletedProcess(
            TRAINER, code, stdout.read_text(errors="replace"), stderr.read_text(errors="replace")
        )
