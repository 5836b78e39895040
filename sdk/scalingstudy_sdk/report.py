"""A trial's result, reported as the contract asks: the result file (always; the
operator reads it as the pod's termination message) and, when a Pushgateway is given,
its gauges pushed as one group per trial (the operator cross-checks and deletes it).
Standard library only: the push is Prometheus' text format over HTTP."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import sys
import urllib.parse
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


def size_labels(env: Mapping[str, str]) -> str:
    """The labels every trial gauge carries besides its push group's (text format)."""
    return ",".join(
        f'{key}="{_label(env.get(var, ""))}"'
        for key, var in (("data_size", contract.ENV_DATA_SIZE),
                         ("model_size", contract.ENV_MODEL_SIZE), ("seed", contract.ENV_SEED))
    )  # fmt: skip


def exposition(result: Mapping[str, Any], env: Mapping[str, str], which: str = "Final") -> str:
    """The result's gauges in Prometheus' text format, labelled with the trial's sizes
    (``which`` says in their help whether they are final or the latest evaluation's)."""
    labels = size_labels(env)
    gauges = dict(contract.TRIAL_GAUGES)
    custom = env.get(contract.ENV_METRIC, "")
    if custom and custom not in gauges:
        gauges[custom] = f"scalingstudy_trial_{custom}"
    lines = []
    for key, metric in gauges.items():
        value = result.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            lines += [
                f"# HELP {metric} {which} {key} of a scaling-study trial",
                f"# TYPE {metric} gauge",
                f"{metric}{{{labels}}} {number(float(value))}",
            ]
    return "\n".join(lines) + "\n"


def number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class PushgatewayError(ValueError):
    """A Pushgateway address no push could reach (refused when the trial starts)."""


def pushgateway_url(gateway: str) -> str:
    """The base URL of the Pushgateway ``gateway`` names (``host:port`` means http), or
    PushgatewayError saying what is wrong: the same parse the push makes, so an address
    that passes here fails a push only by the network or the peer, never by its form."""
    if any(c.isspace() or not c.isprintable() for c in gateway):
        raise PushgatewayError("a space or control character in it")
    url = gateway.rstrip("/") if "://" in gateway else f"http://{gateway.rstrip('/')}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise PushgatewayError(f"scheme {parts.scheme!r}, not http or https")
    if not parts.hostname:
        raise PushgatewayError("no host")
    if "@" in parts.netloc:
        raise PushgatewayError("user credentials in it (not supported)")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise PushgatewayError("a query or fragment in it (the push appends a path)")
    try:
        parts.port  # noqa: B018 - the property parses (and range-checks) the port
    except ValueError:
        port = parts.netloc.rsplit(":", 1)[-1]
        raise PushgatewayError(f"port {port!r}, not a number in 0-65535") from None
    return url


def redacted(gateway: str) -> str:
    """The address as a message may show it: user credentials in it replaced by ***."""
    return re.sub(r"(^|://)[^/@]*@", r"\1***@", gateway)


def group_url(gateway: str, job: str, env: Mapping[str, str]) -> str:
    """The URL of the trial's push group under ``job`` (its result's, or its progress')."""
    return pushgateway_url(gateway) + f"/metrics/job/{job}" + "".join(
        _path_part(name, env.get(var, ""))
        for name, var in (("namespace", contract.ENV_NAMESPACE),
                          ("study", contract.ENV_STUDY), ("trial", contract.ENV_TRIAL))
    )  # fmt: skip


def put_group(url: str, text: str, timeout: float) -> None:
    """Replace the push group at ``url`` with the gauges in ``text``."""
    request = urllib.request.Request(
        url, data=text.encode(), method="PUT",
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        answer.read()


def push_result(gateway: str, result: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Replace the trial's group on the Pushgateway with its final numbers."""
    put_group(group_url(gateway, contract.PUSH_JOB, env), exposition(result, env), timeout=10)


def report_result(result: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
    """Honour the contract: write SCALINGSTUDY_RESULT_FILE, push to the Pushgateway.

    The result file is written first and is what the executor reads; the push is a
    cross-check. So a push that fails in any way (network, a peer that is not HTTP, an
    address malformed past Trial.from_env's check) is one line on stderr, never an
    exception: one would fail the pod after its result was written, and the executor
    would train the trial again. A network error is retried; anything else is not."""
    env = os.environ if env is None else env
    path = env.get(contract.ENV_RESULT_FILE, "")
    if path:
        write_result_file(path, result)
    gateway = env.get(contract.ENV_PUSHGATEWAY, "")
    if not gateway:
        return
    attempt, error = 0, ""
    while attempt < PUSH_ATTEMPTS:
        attempt += 1
        try:
            push_result(gateway, result, env)
            return
        except OSError as exc:  # the network: worth another try
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a push must never lose the result
            error = f"{type(exc).__name__}: {exc}"
            break
    print(json.dumps({"event": "push_failed", "gateway": redacted(gateway), "attempts": attempt,
                      "error": error}), file=sys.stderr, flush=True)  # fmt: skip
