"""A process's place among the processes of one trial (torchrun's RANK, WORLD_SIZE and
LOCAL_RANK); one process is a world of one. Free of torch, so the launcher and
``--check`` import it cheaply."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scalingstudy_trainer.errors import ConfigError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class World:
    """This process's place among the trial's processes (torchrun's variables)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False
    """Started by a launcher (torchrun): such a process joins a process group even when it
    is the only one, so one process on one GPU runs the whole distributed path (NCCL)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> World:
        env = os.environ if env is None else env
        if "LOCAL_RANK" not in env:
            return cls()
        return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]), launched=True)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1 or self.launched

    def share(self, items: int) -> tuple[int, int]:
        """This rank's contiguous part [start, end) of ``items`` (the first ranks take one
        more when it does not divide)."""
        base, extra = divmod(items, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def device(self) -> torch.device:
        import torch

        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank if self.distributed else 0)
        return torch.device("cpu")


SINGLE = World()


def check_batch(batch_size: int, processes: int) -> None:
    """Every process needs at least one item of each step's batch."""
    if batch_size < processes:
        raise ConfigError(
            f"the batch of {batch_size} items cannot be shared by {processes} "
            "processes (nodes x processesPerPod): raise training.batchSize or use fewer"
        )
