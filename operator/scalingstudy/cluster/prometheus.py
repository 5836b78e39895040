"""Trial results through Prometheus, and clean-up of the Pushgateway groups behind them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from scalingstudy.contract import PUSH_JOB, TRIAL_GAUGES

PREFIX = "scalingstudy_trial_"
KEY_OF_METRIC = {metric: key for key, metric in TRIAL_GAUGES.items()}
#: The Pushgateway's own per-group gauge: when the trial last pushed (stale-result guard).
PUSH_TIME = "push_time_seconds"


class PrometheusUnavailableError(RuntimeError):
    pass


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal: backslash and quote escaped, no raw newlines."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def study_query(namespace: str, study: str) -> str:
    """Every trial gauge of one study and its push times (groups are deleted once recorded,
    so the answer stays small)."""
    return (
        f'{{__name__=~"{PREFIX}.+|{PUSH_TIME}",job="{PUSH_JOB}",namespace={promql_string(namespace)},'
        f"study={promql_string(study)}}}"
    )


def samples_by_trial(result: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """An instant-vector API answer -> {trial: {result key: value}} (pure)."""
    out: dict[str, dict[str, float]] = {}
    for sample in result.get("data", {}).get("result", []):
        labels = sample.get("metric", {})
        name, trial = labels.get("__name__", ""), labels.get("trial")
        if not trial or not (name.startswith(PREFIX) or name == PUSH_TIME):
            continue
        key = name if name == PUSH_TIME else KEY_OF_METRIC.get(name, name[len(PREFIX) :])
        try:
            out.setdefault(trial, {})[key] = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return out


class Prometheus:
    """Reads final trial metrics; POST keeps long selectors out of URLs and logs."""

    def __init__(self, url: str, pushgateway: str = "", timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.pushgateway = pushgateway.rstrip("/")
        self.http = httpx.Client(timeout=timeout)

    def study_results(self, namespace: str, study: str) -> dict[str, dict[str, float]]:
        if not self.url:
            raise PrometheusUnavailableError("no --prometheus-url configured")
        try:
            r = self.http.post(
                f"{self.url}/api/v1/query", data={"query": study_query(namespace, study)}
            )
            r.raise_for_status()
            body = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusUnavailableError(f"Prometheus query failed: {exc}") from None
        if body.get("status") != "success":
            raise PrometheusUnavailableError(f"Prometheus query failed: {body.get('error')}")
        return samples_by_trial(body)

    def delete_group(self, namespace: str, study: str, trial: str) -> bool:
        """Forget the trial's pushed gauges (a recorded trial's group is dead weight)."""
        if not self.pushgateway:
            return False
        path = "/".join(
            f"{k}/{quote(v, safe='')}"
            for k, v in (
                ("job", PUSH_JOB),
                ("namespace", namespace),
                ("study", study),
                ("trial", trial),
            )
        )
        try:
            r = self.http.delete(f"{self.pushgateway}/metrics/{path}")
        except httpx.HTTPError:
            return False
        return r.status_code in (200, 202)
