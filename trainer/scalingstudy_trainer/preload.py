"""What lets a process that imported torch fork trainer processes: whether the machine
allows it, and the imports to do before forking (``warm`` forks local trials,
``launch`` the processes of a distributed trial). Imports nothing of the trainer at
module level, so both can use it."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

#: What a trial imports before its first step; each a second or more from cold.
PRELOAD = (
    "torch",
    "torch.optim",
    "torch._dynamo",
    "torch.distributed",
    "torch.distributed.launcher.api",
    "scalingstudy_trainer.main",
    "scalingstudy_trainer.loop",
    "scalingstudy_trainer.checkpoint",
    "scalingstudy_trainer.distributed",
    "scalingstudy_trainer.batches",
    "scalingstudy_trainer.tasks",
)
#: Device files of a GPU driver: a driver initialised before a fork is unusable in the
#: child, so where one exists every trainer process starts fresh.
GPU_DEVICES = ("/dev/nvidiactl", "/dev/kfd")


def can_fork() -> bool:
    """Whether trainer processes may be forked from one that has imported torch (the warm
    process of local trials, and ``launch``'s agent): Linux without a GPU driver."""
    return sys.platform.startswith("linux") and not any(map(os.path.exists, GPU_DEVICES))


def preload() -> None:
    """Import what trials need; a module that fails to import is left to the trial,
    which then fails with the same error a fresh process would."""
    for name in PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    with contextlib.suppress(Exception):
        from scalingstudy_trainer.tasks import task_names

        task_names()  # every built-in task module
