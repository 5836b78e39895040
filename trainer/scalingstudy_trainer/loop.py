"""The training loop: a budget that grows with the subset, early stopping on validation loss."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from scalingstudy.spec import TrainingSpec
from scalingstudy_trainer.tasks.base import Task, parameter_count

Log = Callable[..., None]


@dataclass(frozen=True)
class Outcome:
    validation_loss: float
    train_loss: float
    steps: int
    samples_seen: int
    parameters: int
    best_step: int
    seconds: float


def step_budget(training: TrainingSpec, data_size: int, batch_size: int) -> int:
    """Steps for ``epochs`` passes over the subset, within [minSteps, maxSteps]."""
    wanted = math.ceil(training.epochs * data_size / batch_size)
    return max(training.min_steps, min(training.max_steps, wanted))


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def evaluate(
    task: Task,
    model: torch.nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    batch_size: int = 8192,
) -> float:
    model.eval()
    inputs, targets = data
    total, count = 0.0, 0
    for start in range(0, inputs.shape[0], batch_size):
        x, y = inputs[start : start + batch_size], targets[start : start + batch_size]
        total += float(task.loss(model, x, y)) * x.shape[0]
        count += x.shape[0]
    model.train()
    return total / count


def train(
    task: Task, data_size: int, model_size: int, seed: int, training: TrainingSpec, log: Log
) -> Outcome:
    started = time.monotonic()
    device = pick_device()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    subset = tuple(t.to(device) for t in task.train_subset(data_size))
    validation = tuple(t.to(device) for t in task.validation_set())
    model = task.build_model(model_size).to(device)
    params = parameter_count(model)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay
    )
    batch_size = min(training.batch_size, data_size)
    budget = step_budget(training, data_size, batch_size)
    log(
        "start",
        data_size=data_size,
        model_size=model_size,
        seed=seed,
        parameters=params,
        step_budget=budget,
        batch_size=batch_size,
        device=str(device),
    )

    best = math.inf
    best_step = 0
    best_state: dict[str, Any] | None = None
    stale = 0
    train_loss_sum, train_loss_n, last_train = 0.0, 0, math.nan
    step = 0
    batches = task.batches(subset, batch_size, generator)  # type: ignore[arg-type]
    while step < budget:
        x, y = next(batches)
        loss = task.loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        step += 1
        train_loss_sum += float(loss.detach())
        train_loss_n += 1
        if step % training.eval_every == 0 or step == budget:
            last_train = train_loss_sum / train_loss_n
            train_loss_sum, train_loss_n = 0.0, 0
            val = evaluate(task, model, validation)  # type: ignore[arg-type]
            log(
                "eval",
                step=step,
                samples_seen=step * batch_size,
                train_loss=last_train,
                validation_loss=val,
            )
            if val < best - training.early_stopping.min_delta:
                best, best_step, stale = val, step, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= training.early_stopping.patience:
                    log("early_stop", step=step, best_step=best_step)
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    train_full = evaluate(task, model, subset)  # type: ignore[arg-type]
    return Outcome(
        validation_loss=best,
        train_loss=train_full,
        steps=step,
        samples_seen=step * batch_size,
        parameters=params,
        best_step=best_step,
        seconds=time.monotonic() - started,
    )
