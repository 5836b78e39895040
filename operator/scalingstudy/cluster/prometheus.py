"""Trial results through Prometheus, and clean-up of the Pushgateway groups behind them."""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from scalingstudy.contract import PUSH_JOB, TRIAL_GAUGES

PREFIX = "scalingstudy_trial_"
KEY_OF_METRIC = {metric: key for key, metric in TRIAL_GAUGES.items()}
#: The Pushgateway's own per-group gauge: when the trial last pushed (stale-result guard).
PUSH_TIME = "push_time_seconds"
#: Circuit breaker waits after failed queries (seconds): a Prometheus that never answers
#: costs one timeout per wait instead of one per pass of every study.
BREAKER_MIN = 5.0
BREAKER_MAX = 300.0


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


def samples_by_trial(answer: Any) -> dict[str, dict[str, float]]:
    """An instant-vector API answer -> {trial: {result key: value}} (pure). An answer that
    is not an instant vector raises PrometheusUnavailableError: nothing is guessed."""
    data = answer.get("data") if isinstance(answer, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list):
        raise PrometheusUnavailableError("Prometheus answered something that is no instant vector")
    out: dict[str, dict[str, float]] = {}
    for sample in result:
        labels = sample.get("metric") if isinstance(sample, dict) else None
        if not isinstance(labels, dict):
            continue
        name, trial = str(labels.get("__name__", "")), labels.get("trial")
        if (
            not isinstance(trial, str)
            or not trial
            or not (name.startswith(PREFIX) or name == PUSH_TIME)
        ):
            continue
        key = name if name == PUSH_TIME else KEY_OF_METRIC.get(name, name[len(PREFIX) :])
        try:
            out.setdefault(trial, {})[key] = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return out


def group_labels(answer: Any) -> list[dict[str, str]]:
    """The Pushgateway's /api/v1/metrics answer -> each group's labels (pure; an answer
    of the wrong shape yields nothing)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    out = []
    for group in data if isinstance(data, list) else []:
        labels = group.get("labels") if isinstance(group, dict) else None
        if isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values()):
            out.append({str(k): v for k, v in labels.items()})
    return out


def study_groups(
    groups: Iterable[Mapping[str, str]],
    namespace: str,
    study: str,
    trials: Collection[str] | None = None,
    job: str = PUSH_JOB,
) -> list[Mapping[str, str]]:
    """The push groups of a study's trials (of the given ones, when given) under ``job``:
    the results' (``scalingstudy``) or the live progress' (``scalingstudy-progress``)."""
    return [
        g
        for g in groups
        if g.get("job") == job
        and g.get("namespace") == namespace
        and g.get("study") == study
        and (trials is None or g.get("trial") in trials)
    ]


def group_path(labels: Mapping[str, str]) -> str:
    """The Pushgateway path of a group: every label value base64url-encoded, so values
    with '/' (or empty ones) address exactly that group."""

    def encoded(value: str) -> str:
        return base64.urlsafe_b64encode(value.encode()).decode() or "="

    first = [("job", labels["job"]), *sorted((k, v) for k, v in labels.items() if k != "job")]
    return "/".join(f"{quote(k, safe='')}@base64/{encoded(v)}" for k, v in first)


class Prometheus:
    """Reads final trial metrics; POST keeps long selectors out of URLs and logs."""

    def __init__(self, url: str, pushgateway: str = "", timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.pushgateway = pushgateway.rstrip("/")
        self.http = httpx.Client(timeout=timeout)
        #: Circuit breaker: after a failure Prometheus is not asked again until then
        #: (monotonic), the wait doubling up to BREAKER_MAX; a success closes it.
        self.retry_at = 0.0
        self.backoff = 0.0
        #: Since when (UTC) every query has been answered; None after a failure.
        self.answering_since: dt.datetime | None = None

    def study_results(self, namespace: str, study: str) -> dict[str, dict[str, float]]:
        return samples_by_trial(self.instant(study_query(namespace, study)))

    def instant(self, query: str) -> Any:
        """An instant query's answer, an instant vector (`samples_by_trial` reads it),
        through the circuit breaker every query shares: a Prometheus that hangs costs
        one timeout, then none until the breaker's wait has passed."""
        if not self.url:
            raise PrometheusUnavailableError("no --prometheus-url configured")
        now = time.monotonic()
        if now < self.retry_at:
            raise PrometheusUnavailableError(
                f"Prometheus failed recently; next try in {self.retry_at - now:.0f} s"
            )
        try:
            r = self.http.post(f"{self.url}/api/v1/query", data={"query": query})
            r.raise_for_status()
            body = r.json()
            if not isinstance(body, dict) or body.get("status") != "success":
                error = body.get("error") if isinstance(body, dict) else body
                raise PrometheusUnavailableError(f"Prometheus query failed: {error}")
            samples_by_trial(body)  # an answer that is no instant vector fails here
        except (httpx.HTTPError, ValueError, PrometheusUnavailableError) as exc:
            self.backoff = min(max(2 * self.backoff, BREAKER_MIN), BREAKER_MAX)
            self.retry_at = time.monotonic() + self.backoff
            self.answering_since = None
            if isinstance(exc, PrometheusUnavailableError):
                raise
            raise PrometheusUnavailableError(f"Prometheus query failed: {exc}") from None
        self.backoff, self.retry_at = 0.0, 0.0
        self.answering_since = self.answering_since or dt.datetime.now(dt.UTC)
        return body

    def push_groups(self) -> list[dict[str, str]]:
        """The grouping labels of every group on the Pushgateway ([] when unreachable)."""
        if not self.pushgateway:
            return []
        try:
            r = self.http.get(f"{self.pushgateway}/api/v1/metrics")
            r.raise_for_status()
            return group_labels(r.json())
        except (httpx.HTTPError, ValueError):
            return []

    def delete_groups(
        self,
        namespace: str,
        study: str,
        trials: Collection[str] | None = None,
        jobs: Collection[str] = (PUSH_JOB,),
    ) -> int:
        """Delete every group under ``jobs`` that carries the study's labels (of the given
        trials only, when given), whatever other labels it has: a group pushed with an
        extra label is not the trainer's and must not outlive the trial. One listing of
        the gateway. Returns how many went."""
        listed = self.push_groups()
        return self.delete_each(
            [g for job in jobs for g in study_groups(listed, namespace, study, trials, job)]
        )

    def delete_each(self, groups: Iterable[Mapping[str, str]]) -> int:
        """Delete these groups (by their full grouping labels); how many went."""
        deleted = 0
        for labels in groups:
            try:
                r = self.http.delete(f"{self.pushgateway}/metrics/{group_path(labels)}")
            except httpx.HTTPError:
                continue
            deleted += r.status_code in (200, 202)
        return deleted
