"""Reporting a trial's result: the result file (always) and the Pushgateway (when given).

Custom trainers may import ``report_result`` to honour the contract in one call.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalingstudy import contract
from scalingstudy.atomic import write_atomic

GAUGES = contract.TRIAL_GAUGES


def write_result_file(path: str, result: Mapping[str, Any]) -> None:
    """Write the result JSON; atomically where the directory allows (never half a file
    for the local runner), directly for the kubelet's termination-message path."""
    text = json.dumps(result, sort_keys=True, separators=(",", ":"))
    target = Path(path)
    try:
        write_atomic(target, text)
    except OSError:
        # The termination-message path is a bind mount in a directory a non-root trainer
        # cannot write: it can be neither created beside nor renamed over.
        target.write_text(text, encoding="utf-8")


def push_result(gateway: str, result: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Push the final numbers as gauges; one group per trial, so the operator can delete it."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    labels = {
        "data_size": env.get(contract.ENV_DATA_SIZE, ""),
        "model_size": env.get(contract.ENV_MODEL_SIZE, ""),
        "seed": env.get(contract.ENV_SEED, ""),
    }
    gauges = dict(GAUGES)
    custom = env.get(contract.ENV_METRIC, "")
    if custom and custom not in gauges:
        gauges[custom] = f"scalingstudy_trial_{custom}"
    for key, metric in gauges.items():
        if isinstance(result.get(key), int | float):
            gauge = Gauge(
                metric, f"Final {key} of a scaling-study trial", list(labels), registry=registry
            )
            gauge.labels(**labels).set(float(result[key]))
    push_to_gateway(
        gateway,
        job=contract.PUSH_JOB,
        registry=registry,
        grouping_key={
            "namespace": env.get(contract.ENV_NAMESPACE, ""),
            "study": env.get(contract.ENV_STUDY, ""),
            "trial": env.get(contract.ENV_TRIAL, ""),
        },
        timeout=10,
    )


def report_result(result: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
    """Honour the trainer contract: write SCALINGSTUDY_RESULT_FILE, push to the Pushgateway.

    A failed push is logged and not fatal: the operator falls back to the result file.
    """
    env = os.environ if env is None else env
    path = env.get(contract.ENV_RESULT_FILE, "")
    if path:
        write_result_file(path, result)
    gateway = env.get(contract.ENV_PUSHGATEWAY, "")
    if gateway:
        for attempt in range(3):
            try:
                push_result(gateway, result, env)
                break
            except OSError as exc:
                print(
                    json.dumps({"event": "push_failed", "attempt": attempt + 1, "error": str(exc)}),
                    file=sys.stderr,
                )
