"""The task interface: what a built-in task provides to the training loop.

A new task is one new module in this package that defines a subclass of
``Task`` decorated with ``@register``; nothing else changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from scalingstudy_trainer.errors import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor]


class TaskOptions(BaseModel):
    """Base of every task's options: camelCase keys as in the study file, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Task(ABC):
    """A dataset stream with nested subsets, a validation set and a model family."""

    name: ClassVar[str]
    unit: ClassVar[str] = "examples"
    """What a data size counts (examples, characters, ...); stated in every result."""
    options_model: ClassVar[type[TaskOptions]] = TaskOptions

    def __init__(self, options: dict[str, Any], data_seed: int) -> None:
        try:
            self.options = self.options_model.model_validate(options)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "options"
            raise ConfigError(f"task {self.name}: options.{where}: {first['msg']}") from None
        self.data_seed = data_seed

    @abstractmethod
    def train_subset(self, data_size: int) -> Batch:
        """The first ``data_size`` training examples (nested: a prefix of a fixed order)."""

    @abstractmethod
    def validation_set(self) -> Batch:
        """The fixed validation set, disjoint from every training subset."""

    @abstractmethod
    def build_model(self, model_size: int) -> torch.nn.Module:
        """A model of the family at this size knob."""

    @abstractmethod
    def loss(
        self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Mean loss of a batch (the metric reported as validation_loss)."""

    def batches(
        self, subset: Batch, batch_size: int, generator: torch.Generator
    ) -> Iterator[Batch]:
        """Endless random minibatches of the subset; seeded per trial."""
        inputs, targets = subset
        n = inputs.shape[0]
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n - batch_size + 1, batch_size):
                idx = order[start : start + batch_size]
                yield inputs[idx], targets[idx]


REGISTRY: dict[str, type[Task]] = {}
T = TypeVar("T", bound=type[Task])


def register(cls: T) -> T:
    REGISTRY[cls.name] = cls
    return cls


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


Factory = Callable[[dict[str, Any], int], Task]
