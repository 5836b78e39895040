"""Entry point of the built-in trainer (``python -m scalingstudy_trainer``)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from scalingstudy.contract import ENV_METRICS_PORT, EXIT_CONFIG_ERROR
from scalingstudy_trainer.config import read_config
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


def main() -> int:
    try:
        config = read_config()
        from scalingstudy_trainer.loop import train
        from scalingstudy_trainer.tasks import get_task

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
        )
    except ConfigError as exc:
        print(f"scalingstudy-trainer: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    result = {
        config.metric: outcome.validation_loss,
        "validation_loss": outcome.validation_loss,
        "train_loss": outcome.train_loss,
        "parameters": outcome.parameters,
        "steps": outcome.steps,
        "samples_seen": outcome.samples_seen,
        "best_step": outcome.best_step,
        "seconds": round(outcome.seconds, 3),
        "data_unit": task.unit,
    }
    report_result(result)
    log("result", **result)
    return 0
