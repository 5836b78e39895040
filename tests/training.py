"""Helpers of the trainer tests: the built-in trainer as a process, and a few plain
optimiser steps that show a task's loss and model can learn."""

from __future__ import annotations

import subprocess
import sys

import torch

from scalingstudy_trainer.tasks.base import Task


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


def run_trainer(env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The built-in trainer as a user's process: exit status, stdout log, stderr."""
    return subprocess.run(
        TRAINER, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
