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
from typing import Any

from scalingstudy.contract import (
    ENV_METRICS_PORT,
    EXIT_CONFIG_ERROR,
    EXIT_PREEMPTED,
    TrialResult,
)
from scalingstudy_trainer.config import TrialConfig, read_config
from scalingstudy_trainer.errors import ConfigError
from scalingstudy_trainer.report import report_result


def log(event: str, **fields: Any) -> None:
    """One JSON object per line on stdout: easy to grep locally and to ship from a pod."""
    print(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}), flush=True)


def progress_log() -> Any:
    """The JSON-lines log, also feeding /metrics when SCALINGSTUDY_METRICS_PORT is set."""
    port = os.environ.get(ENV_METRICS_PORT, "")
    if not port.isdigit() or int(port) == 0:
        return log
    from scalingstudy_trainer.progress import Progress

    progress = Progress(os.environ)
    if not progress.serve(int(port)):
        log("metrics_unavailable", port=int(port))
        return log

    def log_and_export(event: str, **fields: Any) -> None:
        progress.on_event(event, fields)
        log(event, **fields)

    return log_and_export


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


def run_trial(config: TrialConfig, stop: Any) -> dict[str, Any]:
    """Train (or resume, or recall a finished run) and return the result."""
    from scalingstudy_trainer.checkpoint import Checkpoints
    from scalingstudy_trainer.loop import train
    from scalingstudy_trainer.tasks import get_task

    checkpoints = Checkpoints(config.checkpoint_dir, identity(config))
    finished = checkpoints.load_result()
    if finished is not None:
        log("finished_before", checkpoint_dir=config.checkpoint_dir)
        return finished
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        import torch

        torch.set_num_threads(int(threads))
    task = get_task(config.task.name)(config.task.options, config.task.data_seed)
    outcome = train(
        task,
        config.data_size,
        config.model_size,
        config.seed,
        config.training,
        progress_log(),
        checkpoints=checkpoints,
        stop=lambda: bool(stop),
    )
    extras: dict[str, Any] = {
        "best_step": outcome.best_step,
        "batch_size": outcome.batch_size,
        "seconds": round(outcome.seconds, 3),
        "resumed_from_step": outcome.resumed_from_step,
        "schedule_progress": round(outcome.schedule_progress, 4),
        "final_learning_rate_ratio": round(outcome.final_learning_rate_ratio, 6),
        "data_unit": task.unit,
        **task.describe(config.data_size),
    }
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
    from scalingstudy_trainer.checkpoint import Preempted, StopSignal

    if "--check" in (sys.argv[1:] if argv is None else argv):
        try:
            check(read_config())
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG_ERROR
        return 0
    stop = StopSignal().install()
    try:
        config = read_config()
        result = run_trial(config, stop)
    except ConfigError as exc:
        print(f"scalingstudy-trainer: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except Preempted:
        return EXIT_PREEMPTED
    report_result(result)
    log("result", **result)
    return 0
