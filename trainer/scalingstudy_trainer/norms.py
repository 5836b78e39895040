"""BatchNorm across the processes of one trial: each step normalises over the whole
global micro-batch (every process's share of it), as one process would, so the running
statistics are the same on every process, both halves of the validation set are scored
by the same model, and a trial of 2 processes trains like a trial of 1.

On a GPU this is torch's SyncBatchNorm; torch's refuses CPU tensors, so on a CPU (gloo)
the layers become ``GlobalBatchNorm``, the same computation with a differentiable
all-reduce of each channel's sums (its backward all-reduces their gradients), built on
``torch.distributed.all_reduce`` (torch.distributed.nn's differentiable one is deprecated
and warns at every call on torch 2.15; its suggested replacement is a private module)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm

#: The BatchNorm layers whose statistics depend on the micro-batch.
NORMS: tuple[type[torch.nn.Module], ...] = (_BatchNorm,)


def has_batch_norm(model: torch.nn.Module) -> bool:
    """Whether the model normalises over its batch (and so depends on how it is cut)."""
    return any(isinstance(m, NORMS) for m in model.modules())


def synchronise_batch_norm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model with every BatchNorm layer normalising across processes (same weights,
    buffers and state-dict keys)."""
    if device.type == "cuda":
        converted: torch.nn.Module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
        return converted
    for module in model.modules():
        if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
            module.__class__ = _global_class(type(module))
    return model


_CLASSES: dict[type[Any], type[Any]] = {}


def _global_class(cls: type[_BatchNorm]) -> type[_BatchNorm]:
    """BatchNorm1d/2d/3d with GlobalBatchNorm's forward (their input checks kept)."""
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Global{cls.__name__}", (GlobalBatchNorm, cls), {})
    return _CLASSES[cls]


class SumOverProcesses(torch.autograd.Function):
    """A tensor summed over every process, differentiable: each process's input reaches
    every process's output, so its gradient is the sum of every process's output
    gradient (another all-reduce)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


class GlobalBatchNorm(_BatchNorm):
    """A BatchNorm layer whose training-mode statistics are those of the union of every
    process's input. Sums are taken in float64: E[x^2] - E[x]^2 in float32 would lose the
    digits that make it agree with one process's BatchNorm."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if not self.training or world == 1:
            plain: torch.Tensor = super().forward(input)
            return plain
        self._check_input_dim(input)  # type: ignore[no-untyped-call]
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        wide = input.double()
        count = torch.full((1,), input.numel() / channels, dtype=torch.float64,
                           device=input.device)  # fmt: skip
        local = torch.cat([wide.sum(dims), (wide * wide).sum(dims), count])
        total: torch.Tensor = SumOverProcesses.apply(local)
        n = total[-1]
        mean = total[:channels] / n
        var = total[channels : 2 * channels] / n - mean * mean
        if self.track_running_stats and self.running_mean is not None:
            self._update_running(mean.detach(), var.detach(), n.detach())
        shape = [1, channels] + [1] * (input.dim() - 2)
        scale = torch.rsqrt(var + self.eps).to(input.dtype).view(shape)
        out = (input - mean.to(input.dtype).view(shape)) * scale
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        """The running statistics as BatchNorm keeps them (the variance unbiased)."""
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * n / torch.clamp(n - 1, min=1)
        self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype) * momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype) * momentum)
