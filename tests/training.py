"""A few plain optimiser steps on one batch: shows a task's loss and model can learn."""

from __future__ import annotations

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
