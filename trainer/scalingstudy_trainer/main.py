"""Entry point of the built-in trainer (``python -m scalingstudy_trainer``).

Exit status: 0 with a result reported; EXIT_CONFIG_ERROR (78) with one line on
stderr when the configuration cannot work (retrying is pointless); EXIT_PREEMPTED
(143) after SIGTERM, with a checkpoint saved when a checkpoint folder is set (the
retry resumes); anything else is a crash the Job may retry.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

from scalingstudy.contract import (
    DIVERGED_AT_STEP,
    ENV_METRICS_PORT,
    EXIT_CONFIG_ERROR,
    EXIT_PREEMPTED,
    MICRO_BATCH,
    NORMALISATION_BATCH_CHANGED,
    TrialResult,
)
from scalingstudy_sdk.curve import EVAL_EVENT
from scalingstudy_sdk.progress import ProgressPush
from scalingstudy_trainer.config import TrialConfig, read_config
from scalingstudy_trainer.errors import ConfigError, DivergedError
from scalingstudy_trainer.launch import launch, needs_launcher, read_launch
from scalingstudy_trainer.report import report_result
from scalingstudy_trainer.world import SINGLE, World, check_batch

if TYPE_CHECKING:
    from scalingstudy_trainer.checkpoint import Checkpoints
    from scalingstudy_trainer.distributed import Collectives
    from scalingstudy_trainer.progress import Progress


def log(event: str, **fields: Any) -> None:
    """One JSON object per line on stdout: easy to grep locally and to ship from a pod."""
    print(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}), flush=True)


class EventLog:
    """The trainer's log: each event a JSON line on stdout (the trial's curve is read from
    its eval lines), also feeding /metrics when SCALINGSTUDY_METRICS_PORT is set and, with
    a Pushgateway, the SDK's progress push (the same code ``Trial.progress`` uses)."""

    def __init__(self, metrics: Progress | None, push: ProgressPush | None) -> None:
        self.metrics, self.push = metrics, push

    def __call__(self, event: str, **fields: Any) -> None:
        if self.metrics is not None:
            self.metrics.on_event(event, fields)
        log(event, **fields)  # the line first: the push may wait on the network
        if self.push is not None and event == EVAL_EVENT:
            self.push.offer(fields)

    def flush(self) -> None:
        """Push the last evaluation the throttle held back (training has ended)."""
        if self.push is not None:
            self.push.flush()


def progress_log() -> EventLog:
    """The JSON-lines log, with /metrics and the progress push where they are set."""
    push = ProgressPush(os.environ)
    port = os.environ.get(ENV_METRICS_PORT, "")
    metrics: Progress | None = None
    if port.isdigit() and int(port) != 0:
        from scalingstudy_trainer.progress import Progress

        metrics = Progress(os.environ)
        if not metrics.serve(int(port)):
            log("metrics_unavailable", port=int(port))
            metrics = None
    return EventLog(metrics, push if push.enabled else None)


def identity(config: TrialConfig) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the trial and everything that shapes it."""
    dump: dict[str, Any] = {"mode": "json", "by_alias": True}
    return {
        "data_size": config.data_size,
        "model_size": config.model_size,
        "seed": config.seed,
        "task": config.task.model_dump(**dump),
        "training": config.training.model_dump(**dump),
    }


def quiet(event: str, **fields: Any) -> None:
    """The log of ranks other than 0: rank 0 speaks for the trial."""


def run_trial(config: TrialConfig, stop: Any, world: World = SINGLE) -> dict[str, Any] | None:
    """Train (or resume, or recall a finished run) and return the result (None on ranks
    other than 0, which report nothing)."""
    from scalingstudy_trainer.checkpoint import Checkpoints
    from scalingstudy_trainer.distributed import Collectives

    checkpoints = Checkpoints(config.checkpoint_dir, identity(config))
    collectives = Collectives(world, world.device())
    try:
        finished = collectives.from_main(checkpoints.load_result() if world.main else None)
        if finished is not None:
            if world.main:
                log("finished_before", checkpoint_dir=config.checkpoint_dir)
            return finished if world.main else None
        result = _train(config, stop, world, collectives, checkpoints)
        # Every rank is done with its collectives before any tears its group down: a gloo
        # rank whose peer is gone while work is still in flight aborts (SIGABRT, seen
        # once in CI as "terminate called without an active exception").
        collectives.barrier()
        return result
    finally:
        collectives.close()


def _train(
    config: TrialConfig,
    stop: Any,
    world: World,
    collectives: Collectives,
    checkpoints: Checkpoints,
) -> dict[str, Any] | None:
    from scalingstudy_trainer.batches import Runtime
    from scalingstudy_trainer.loop import train
    from scalingstudy_trainer.tasks import get_task

    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        import torch

        torch.set_num_threads(int(threads))
    task = get_task(config.task.name)(config.task.options, config.task.data_seed)
    events = progress_log() if world.main else None
    try:
        outcome = train(
            task,
            config.data_size,
            config.model_size,
            config.seed,
            config.training,
            events or quiet,
            checkpoints=checkpoints,
            stop=lambda: bool(stop),
            runtime=Runtime.choose(task, world.device()),
            collectives=collectives,
        )
    finally:
        if events is not None:
            events.flush()
    if not world.main:
        return None
    extras: dict[str, Any] = {
        "best_step": outcome.best_step,
        "batch_size": outcome.batch_size,
        "seconds": round(outcome.seconds, 3),
        "resumed_from_step": outcome.resumed_from_step,
        "processes": world.size,
        "schedule_progress": round(outcome.schedule_progress, 4),
        "final_learning_rate_ratio": round(outcome.final_learning_rate_ratio, 6),
        "step_budget": outcome.step_budget,
        "warmup_steps": outcome.warmup_steps,
        "peak_learning_rate": outcome.peak_learning_rate,
        "final_learning_rate": outcome.final_learning_rate,
        MICRO_BATCH: outcome.micro_batch,
        "data_unit": task.unit,
        **task.describe(config.data_size),
    }
    if outcome.hidden_peak_learning_rate is not None:
        extras["hidden_peak_learning_rate"] = outcome.hidden_peak_learning_rate
        extras["hidden_final_learning_rate"] = outcome.hidden_final_learning_rate
    if outcome.normalisation_batch_changed:
        extras[NORMALISATION_BATCH_CHANGED] = True
    if outcome.diverged_at_step is not None:
        extras[DIVERGED_AT_STEP] = outcome.diverged_at_step
    if outcome.non_embedding_parameters is not None:
        extras["non_embedding_parameters"] = outcome.non_embedding_parameters
    result = TrialResult(
        loss=outcome.validation_loss,
        train_loss=outcome.train_loss,
        parameters=outcome.parameters,
        steps=outcome.steps,
        samples_seen=outcome.samples_seen,
        **extras,
    ).to_json(config.metric)
    checkpoints.save_result(result)
    return result


def check(config: TrialConfig) -> None:
    """What `--check` verifies before a study starts: the task and its options exist and
    the data holds a subset of this trial's size (loads the data, trains nothing)."""
    from scalingstudy_trainer.tasks import get_task

    task = get_task(config.task.name)(config.task.options, config.task.data_seed)
    task.check_data_size(config.data_size)


def main(argv: list[str] | None = None) -> int:
    """Train the trial of the environment; with ``--check`` only check its configuration
    (exit 0, or EXIT_CONFIG_ERROR with the problem on stderr)."""
    code = run(argv)
    if World.from_env().distributed:
        end_rank(code)
    return code


def end_rank(code: int) -> NoReturn:
    """A process of a distributed trial ends without the interpreter's teardown. DDP's
    reducer keeps the gloo process group and its worker threads alive past
    ``destroy_process_group``; destroying them while the interpreter finalizes can abort
    the process (SIGABRT, "terminate called without an active exception"), which failed
    a trial whose result rank 0 had already reported, twice in this project's test runs.
    Everything the trial leaves (result, checkpoint, logs) is written and flushed by now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(argv: list[str] | None) -> int:
    """``main`` without its ending: the exit status."""
    from scalingstudy_trainer.checkpoint import Preempted, StopSignal

    if "--check" in (sys.argv[1:] if argv is None else argv):
        try:
            check(read_config())
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG_ERROR
        return 0
    stop = StopSignal().install()
    world = World.from_env()
    try:
        config = read_config()
        if needs_launcher():
            # A batch too small for the processes fails here, before they are started
            # (each would import torch for seconds to say the same).
            pod = read_launch()
            check_batch(config.training.batch_size, pod.processes)
            return launch(pod, forked_process)
        if world.distributed:
            die_with_launcher()
        result = run_trial(config, stop, world)
    except DivergedError as exc:
        print(f"scalingstudy-trainer: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except ConfigError as exc:
        print(f"scalingstudy-trainer: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except Preempted:
        return EXIT_PREEMPTED
    if result is not None:
        report_result(result)
        log("result", **result)
    return 0


def die_with_launcher() -> None:
    """Linux: a process of a distributed trial gets SIGTERM (and so saves and stops with
    the others) when the launcher that started it dies, even by SIGKILL. Its processes
    run in sessions of their own, out of reach of a signal to the launcher's group."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:  # the launcher died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def forked_process() -> None:
    """One process of the trial, forked by the agent: the trainer's main. It returns
    when it succeeds (the agent waits for a returned value, and its multiprocessing
    ends the process without the interpreter's teardown, as ``main.end_rank`` does);
    otherwise it exits with the trainer's status."""
    code = run([])
    if code != 0:
        raise SystemExit(code)
