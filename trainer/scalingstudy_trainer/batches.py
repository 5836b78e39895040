"""Where each step's batch comes from and where it runs: the runtime (device, bf16,
compile), the step's minibatch as a pure function of (seed, step), the feeder that keeps
data on the GPU or copies it there asynchronously, and evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from scalingstudy.spec import TrainingSpec
from scalingstudy_trainer.distributed import Collectives
from scalingstudy_trainer.tasks.base import Batch, Task
from scalingstudy_trainer.world import SINGLE, World

#: Data smaller than this share of free GPU memory lives on the GPU for the whole run.
RESIDENT_SHARE = 0.25


@dataclass(frozen=True)
class Runtime:
    """Where and how fast to train; never changes what is computed on a CPU."""

    device: torch.device
    bf16: bool
    compile: bool

    @classmethod
    def choose(cls, task: Task, device: torch.device | None = None) -> Runtime:
        device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        cuda = device.type == "cuda"
        precision = task.options.precision
        bf16 = precision == "bf16" or (
            precision == "auto" and cuda and torch.cuda.is_bf16_supported()
        )
        mode = task.options.compile
        compiled = mode == "on" or (mode == "auto" and cuda and task.compile_helps())
        return cls(device=device, bf16=bf16, compile=compiled)

    def autocast(self) -> AbstractContextManager[Any]:
        if not self.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)


def step_budget(training: TrainingSpec, items: int, batch_size: int) -> int:
    """Steps for ``epochs`` passes over the subset, within [minSteps, maxSteps]."""
    wanted = math.ceil(training.epochs * items / batch_size)
    return max(training.min_steps, min(training.max_steps, wanted))


class StepSampler:
    """Indices of the minibatch of a step: epoch e is a permutation seeded by (seed, e),
    cut into whole batches (the remainder waits for a later epoch's shuffle)."""

    def __init__(self, items: int, batch_size: int, seed: int) -> None:
        self.items, self.batch_size, self.seed = items, batch_size, seed
        self.per_epoch = max(items // batch_size, 1)
        self._epoch = -1
        self._order = torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            self._order = torch.randperm(self.items, generator=generator)
            self._epoch = epoch
        start = position * self.batch_size
        return self._order[start : start + self.batch_size]


class Feeder:
    """Batches on the training device. Data that fits stays on the GPU (gathering a batch
    is one kernel); larger data waits in pinned host memory and is copied asynchronously,
    so the copy of the next batch overlaps the current step."""

    def __init__(self, data: Batch, device: torch.device) -> None:
        self.device = device
        nbytes = sum(t.numel() * t.element_size() for t in data)
        resident = device.type != "cuda" or nbytes <= RESIDENT_SHARE * _free_gpu_bytes(device)
        self.data = tuple(t.to(device) for t in data) if resident else data
        self.resident = resident
        self.items = int(data[0].shape[0])

    def batch(self, indices: torch.Tensor) -> Batch:
        if self.resident:
            idx = indices.to(self.device, non_blocking=True)
            x, y = (t.index_select(0, idx) for t in self.data)
            return x, y
        x, y = (t.index_select(0, indices).pin_memory() for t in self.data)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def slices(
        self, size: int, world: World = SINGLE, indices: torch.Tensor | None = None
    ) -> Iterator[Batch]:
        """Batches of the items ``indices`` (all items by default), of this rank's share."""
        every = torch.arange(self.items) if indices is None else indices
        first, end = world.share(int(every.shape[0]))
        for start in range(first, end, size):
            yield self.batch(every[start : min(start + size, end)])


#: Mixed into the seed of the training-loss sample, so it is not the subsets' permutation.
SAMPLE_SALT = 0x7E57


def sample_indices(items: int, limit: int, seed: int) -> torch.Tensor:
    """A fixed random sample of ``limit`` of ``items`` (all when fewer), in ascending order:
    a function of the seed alone, so every process and every resume draws the same. A
    prefix in stored order would be biased (a class-sorted image folder, the start of a
    corpus)."""
    if limit >= items:
        return torch.arange(items)
    generator = torch.Generator().manual_seed((seed * 1_000_003 + SAMPLE_SALT) % 2**63)
    return torch.randperm(items, generator=generator)[:limit].sort().values


def _free_gpu_bytes(device: torch.device) -> int:
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


@torch.no_grad()
def evaluate(
    task: Task,
    model: torch.nn.Module,
    feeder: Feeder,
    runtime: Runtime,
    batch_size: int,
    indices: torch.Tensor | None = None,
    collectives: Collectives | None = None,
) -> float:
    """Mean loss over (the items ``indices`` of) the data, summed on the device; with
    several ranks each evaluates its share and the sums are added up."""
    model.eval()
    world = collectives.world if collectives else SINGLE
    sums = torch.zeros(2, device=runtime.device, dtype=torch.float64)  # loss x items, items
    for x, y in feeder.slices(batch_size, world, indices):
        with runtime.autocast():
            loss = task.loss(model, x, y)
        sums[0] += loss.double() * x.shape[0]
        sums[1] += x.shape[0]
    model.train()
    if collectives is not None:
        collectives.sum(sums)
    total, count = sums.tolist()
    return float(total) / float(count)
