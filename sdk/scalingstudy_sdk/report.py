"""A trial's result, reported as the contract asks: the result file (always; the
operator reads it as the pod's termination message) and, when a Pushgateway is given,
its gauges pushed as one group per trial (the operator cross-checks and deletes it).
Standard library only: the push is Prometheus' text format over HTTP."""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalingstudy_sdk import contract
from scalingstudy_sdk.atomic import write_atomic

PUSH_ATTEMPTS = 3


def write_result_file(path: str, result: Mapping[str, Any]) -> None:
    """Write the result JSON; atomically where the directory allows (never half a file
    for the local runner), directly for the kubelet's termination-message path (a bind
    mount in a directory a non-root trainer can neither create in nor rename over)."""
    text = json.dumps(result, sort_keys=True, separators=(",", ":"))
    target = Path(path)
    try:
        write_atomic(target, text)
    except OSError:
        target.write_text(text, encoding="utf-8")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _path_part(name: str, value: str) -> str:
    """A grouping-key label in a Pushgateway URL (base64, so any value is safe)."""
    encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
    return f"/{name}@base64/{encoded}"


def exposition(result: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The result's gauges in Prometheus' text format, labelled with the trial's sizes."""
    labels = ",".join(
        f'{key}="{_label(env.get(var, ""))}"'
        for key, var in (("data_size", contract.ENV_DATA_SIZE),
                         ("model_size", contract.ENV_MODEL_SIZE), ("seed", contract.ENV_SEED))
    )  # fmt: skip
    gauges = dict(contract.TRIAL_GAUGES)
    custom = env.get(contract.ENV_METRIC, "")
    if custom and custom not in gauges:
        gauges[custom] = f"scalingstudy_trial_{custom}"
    lines = []
    for key, metric in gauges.items():
        value = result.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            lines += [
                f"# HELP {metric} Final {key} of a scaling-study trial",
                f"# TYPE {metric} gauge",
                f"{metric}{{{labels}}} {_number(float(value))}",
            ]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def push_result(gateway: str, result: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Replace the trial's group on the Pushgateway with its final numbers."""
    url = gateway.rstrip("/") if "://" in gateway else f"http://{gateway.rstrip('/')}"
    url += f"/metrics/job/{contract.PUSH_JOB}" + "".join(
        _path_part(name, env.get(var, ""))
        for name, var in (("namespace", contract.ENV_NAMESPACE),
                          ("study", contract.ENV_STUDY), ("trial", contract.ENV_TRIAL))
    )  # fmt: skip
    request = urllib.request.Request(
        url, data=exposition(result, env).encode(), method="PUT",
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def report_result(result: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
    """Honour the contract: write SCALINGSTUDY_RESULT_FILE, push to the Pushgateway. A
    failed push is logged and not fatal: the operator falls back to the result file."""
    env = os.environ if env is None else env
    path = env.get(contract.ENV_RESULT_FILE, "")
    if path:
        write_result_file(path, result)
    gateway = env.get(contract.ENV_PUSHGATEWAY, "")
    if not gateway:
        return
    for attempt in range(PUSH_ATTEMPTS):
        try:
            push_result(gateway, result, env)
            return
        except OSError as exc:
            print(json.dumps({"event": "push_failed", "attempt": attempt + 1,
                              "error": str(exc)}), file=sys.stderr)  # fmt: skip
