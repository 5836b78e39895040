"""Several processes training one trial: distributed data parallel across the GPUs of a
pod and across pods.

The trial stays the single-process trial. Every rank draws the same global minibatch
(it is a function of seed and step) and trains on its contiguous share, so the global
batch is training.batchSize whatever the world size; gradients are summed once per step,
after every rank has said whether its micro-batches fitted in memory (so an out-of-memory
on one rank makes every rank cut its share finer and redo the step, instead of leaving
the others in a gradient collective); BatchNorm normalises over the global micro-batch
(``norms``), so its statistics are the same on every rank; evaluation is shared between
ranks and summed, so every rank sees the same validation loss and takes the same
early-stopping decision; SIGTERM on any rank stops every rank
at the same step (one flag reduced per step on a CPU group, which never waits for the
GPU); rank 0 alone saves checkpoints and reports, and its state is what a resumed run
starts from on every rank. With one process every collective here is the identity.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from scalingstudy_trainer.norms import has_batch_norm, synchronise_batch_norm
from scalingstudy_trainer.world import World, check_batch

T = TypeVar("T")
#: Elements per all-reduce of gradients (float32: 64 MiB), so the flat copy stays small.
BUCKET_ELEMENTS = 1 << 24
#: How long a collective waits for a rank that stopped answering before the trial fails
#: (a lost pod): the Job then retries the whole trial.
COLLECTIVE_TIMEOUT = dt.timedelta(minutes=10)


class Collectives:
    """The collectives the loop needs, all no-ops for a world of one."""

    def __init__(self, world: World, device: torch.device) -> None:
        self.world = world
        self.device = device
        self.control: Any = None
        if not world.distributed:
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, device_id=(
            device if device.type == "cuda" else None))  # fmt: skip
        # Stop flags and decisions go through a CPU group: reading them never waits for
        # the GPU's queue of kernels.
        self.control = dist.new_group(backend="gloo") if backend == "nccl" else None

    def check_batch(self, batch_size: int) -> None:
        check_batch(batch_size, self.world.size)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as the step runs it: with several ranks, BatchNorm across ranks and
        rank 0's weights and buffers on every rank (a seed makes them equal already; this
        makes it so whatever a task's initialisation does)."""
        if not self.world.distributed:
            return model
        if has_batch_norm(model):
            model = synchronise_batch_norm(model, self.device)
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)
        return model

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Each gradient summed over ranks, in place, in buckets of flat copies (a missing
        gradient counts as zeros, so every rank sends the same buckets)."""
        if not self.world.distributed:
            return
        grads = []
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        bucket: list[torch.Tensor] = []
        size = 0
        for grad in grads:
            bucket.append(grad)
            size += grad.numel()
            if size >= BUCKET_ELEMENTS:
                _sum_bucket(bucket)
                bucket, size = [], 0
        if bucket:
            _sum_bucket(bucket)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place (every rank gets the same value)."""
        if self.world.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def minimum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Minimum over ranks, in place (every rank gets the same value)."""
        if self.world.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    def any(self, flag: bool) -> bool:
        """Whether any rank says yes (every rank gets the same answer)."""
        if not self.world.distributed:
            return flag
        value = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control)
        return bool(value.item())

    def from_main(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a checkpoint it loaded, a decision)."""
        if not self.world.distributed:
            return value
        box: list[Any] = [value if self.world.main else None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]  # type: ignore[no-any-return]

    @property
    def backend(self) -> str | None:
        """The process group's backend (nccl, gloo); None for a lone, unlaunched process."""
        return str(dist.get_backend()) if self.world.distributed else None

    def barrier(self) -> None:
        if self.world.distributed:
            dist.barrier(group=self.control)

    def close(self) -> None:
        if self.world.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _sum_bucket(grads: list[torch.Tensor]) -> None:
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
