"""Starting the processes of a trial larger than one process: torchrun's launcher
(torch.distributed.run's elastic agent), with the trainer's exit statuses kept.

One agent runs per pod. With one pod the rendezvous is local (torchrun --standalone);
with several it is static: pod i is node rank i (its Job completion index) and pod 0
hosts the store on SCALINGSTUDY_MASTER_ADDR:PORT, so global rank 0, the rank that
reports, is always on pod 0, whose result the operator reads. No restarts inside the
agent: a failed process fails the pod, and the Job retries the whole trial.

Where no GPU driver is present (``preload.can_fork``) the agent imports what a trial needs
and forks its processes, which then skip torch's imports (about 4 s of CPU each); with
a GPU each process is a fresh ``python -m scalingstudy_trainer``, as CUDA requires.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scalingstudy import contract
from scalingstudy.contract import EXIT_CONFIG_ERROR, EXIT_PREEMPTED
from scalingstudy_trainer.config import env_int
from scalingstudy_trainer.errors import ConfigError
from scalingstudy_trainer.preload import can_fork, preload

#: How long the agent waits for its processes to save a checkpoint after SIGTERM before
#: it kills them; the pod's terminationGracePeriodSeconds is the real bound.
SHUTDOWN_SECONDS = 3600
#: How long pods wait for each other at the rendezvous (their pods may start minutes
#: apart on a busy cluster).
RENDEZVOUS_SECONDS = 900


@dataclass(frozen=True)
class Launch:
    nodes: int
    processes_per_pod: int
    node_rank: int
    master_addr: str
    master_port: int
    run_id: str

    @property
    def processes(self) -> int:
        return self.nodes * self.processes_per_pod


def read_launch(env: Mapping[str, str] | None = None) -> Launch:
    env = os.environ if env is None else env
    launch = Launch(
        nodes=env_int(env, contract.ENV_NODES, 1, default=1),
        processes_per_pod=env_int(env, contract.ENV_PROCESSES_PER_POD, 1, default=1),
        node_rank=env_int(env, contract.ENV_NODE_RANK, 0, default=0),
        master_addr=env.get(contract.ENV_MASTER_ADDR, "") or "127.0.0.1",
        master_port=env_int(env, contract.ENV_MASTER_PORT, 1, default=contract.MASTER_PORT),
        run_id=env.get(contract.ENV_TRIAL, "") or "trial",
    )
    if launch.node_rank >= launch.nodes:
        raise ConfigError(
            f"{contract.ENV_NODE_RANK} is {launch.node_rank}, but the trial has "
            f"{launch.nodes} node(s)"
        )
    return launch


def needs_launcher(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process must start the trial's processes (it is not one of them)."""
    env = os.environ if env is None else env
    return "LOCAL_RANK" not in env and read_launch(env).processes > 1


def _threads_per_process(processes: int) -> str:
    """The pod's (or the local runner's) CPU threads, shared by its processes."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    total = int(threads) if threads.isdigit() else len(os.sched_getaffinity(0))
    return str(max(total // processes, 1))


def exit_status(codes: list[int]) -> int:
    """The pod's exit status from its processes': a configuration error wins (retrying
    cannot help), all preempted reads as preempted, anything else is the first crash."""
    if EXIT_CONFIG_ERROR in codes:
        return EXIT_CONFIG_ERROR
    preempted = {EXIT_PREEMPTED, -15}
    if codes and all(c in preempted for c in codes):
        return EXIT_PREEMPTED
    crashed = [c for c in codes if c not in preempted and c != 0]
    code = crashed[0] if crashed else 1
    return code if code > 0 else 128 - code


def launch(config: Launch, forked_process: Callable[[], None]) -> int:
    """Run this pod's processes of the trial under torchrun's agent, forked or fresh
    (see the module's docstring; ``forked_process`` is what a forked one runs); the
    pod's exit status (see ``exit_status``)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.environ["OMP_NUM_THREADS"] = _threads_per_process(config.processes_per_pod)
    # The agent's own error report would bury a process's one-line configuration error;
    # this function says what failed instead.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    fork = can_fork()
    if fork:
        preload()
    if config.nodes == 1:
        backend, endpoint, extra = "c10d", "localhost:0", {}
    else:
        backend, endpoint = "static", f"{config.master_addr}:{config.master_port}"
        extra = {"rank": config.node_rank}
    launch_config = LaunchConfig(
        min_nodes=config.nodes,
        max_nodes=config.nodes,
        nproc_per_node=config.processes_per_pod,
        run_id=config.run_id,
        rdzv_backend=backend,
        rdzv_endpoint=endpoint,
        rdzv_configs={"timeout": RENDEZVOUS_SECONDS, **extra},
        max_restarts=0,
        monitor_interval=0.5,
        start_method="fork" if fork else "spawn",
        shutdown_timeout=SHUTDOWN_SECONDS,
    )
    try:
        if fork:
            elastic_launch(launch_config, forked_process)()
        else:
            elastic_launch(launch_config, sys.executable)("-m", "scalingstudy_trainer")
    except ChildFailedError as exc:
        codes = [failure.exitcode for failure in exc.failures.values()]
        status = exit_status(codes)
        if status != EXIT_CONFIG_ERROR:  # the failing process's one line stays the last
            print(json.dumps({"event": "processes_failed", "exit_codes": codes}),
                  file=sys.stderr)  # fmt: skip
        return status
    except SignalException:
        return EXIT_PREEMPTED
    except Exception as exc:  # the rendezvous failed (timed out, address not resolvable)
        print(f"scalingstudy-trainer: launcher: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
