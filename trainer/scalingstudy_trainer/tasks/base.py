"""The task interface: what a built-in task provides to the training loop.

A new task is one new module in this package that defines a subclass of
``Task`` decorated with ``@register``; nothing else changes. A task holds data as
tensors whose first dimension indexes items (examples, sequences); the loop
draws minibatches from them, so tasks never see the optimiser or the device.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from scalingstudy_trainer.errors import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor]


class TaskOptions(BaseModel):
    """Base of every task's options: camelCase keys as in the study file, unknown keys rejected.

    ``precision`` and ``compile`` tune speed only; ``auto`` means bf16 autocast and
    ``torch.compile`` (for tasks where it was measured to help) on a GPU, plain fp32 on
    a CPU, where results must be reproducible bit for bit.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"


class Task(ABC):
    """A dataset with nested subsets, a fixed validation set and a model family."""

    name: ClassVar[str]
    unit: ClassVar[str] = "examples"
    """What a data size counts (examples, bytes, ...); stated in every result."""
    options_model: ClassVar[type[TaskOptions]] = TaskOptions
    reads_features: ClassVar[bool] = True
    """The model's first layer reads the raw inputs (whose size does not grow with the
    model), not an embedding."""

    def __init__(self, options: dict[str, Any], data_seed: int) -> None:
        try:
            self.options = self.options_model.model_validate(options)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "options"
            raise ConfigError(f"task {self.name}: options.{where}: {self._said(first)}") from None
        self.data_seed = data_seed

    @classmethod
    def _said(cls, error: Any) -> str:
        """An unknown option names the task's options (a user needs what to type instead
        of pydantic's "Extra inputs are not permitted")."""
        if error["type"] != "extra_forbidden":
            return str(error["msg"])
        fields = cls.options_model.model_fields
        known = sorted(info.alias or name for name, info in fields.items())
        key = str(error["loc"][-1]) if error["loc"] else ""
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown option; {hint}the options of {cls.name} are: {', '.join(known)}"

    @abstractmethod
    def train_subset(self, data_size: int) -> Batch:
        """The training items of the first ``data_size`` units (a prefix of a fixed order,
        so nested); raises ConfigError when the data holds fewer."""

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

    def compile_helps(self) -> bool:
        """Whether ``compile: auto`` compiles the model on a GPU."""
        return False

    def check_data_size(self, data_size: int) -> None:
        """Raise ConfigError when a subset of this size cannot be drawn (loads the data)."""
        self.train_subset(data_size)

    def hidden_matrices(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """The weight matrices whose fan-in grows with width, which learningRateScaling's
        inverse-width rule scales: every Linear, convolution and recurrent weight except
        the first layer when it reads the raw inputs, and except embedding tables (also
        where an output layer shares one)."""
        embedded = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        layered = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.LSTM)
        out: list[torch.nn.Parameter] = []
        first = self.reads_features
        for module in model.modules():
            if not isinstance(module, layered):
                continue
            if first:
                first = False
                continue
            out += [
                p for name, p in module.named_parameters(recurse=False)
                if p.dim() >= 2 and "weight" in name and id(p) not in embedded
            ]  # fmt: skip
        return out

    def eval_items_limit(self) -> int:
        """The most items an evaluation batch may hold (its outputs must fit in memory)."""
        return 1 << 30

    def non_embedding_parameters(self, model: torch.nn.Module) -> int | None:
        """Parameters outside embedding tables (Kaplan et al.'s N); None for non-LMs."""
        return None

    def describe(self, data_size: int) -> dict[str, Any]:
        """Extra result fields: what the data was, how much of it a subset really used."""
        return {}

    def flops_per_item(self, model: torch.nn.Module) -> float | None:
        """Training FLOPs (forward + backward) per item, for MFU; None when unknown."""
        return None


REGISTRY: dict[str, type[Task]] = {}
T = TypeVar("T", bound=type[Task])


def register(cls: T) -> T:
    REGISTRY[cls.name] = cls
    return cls


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
