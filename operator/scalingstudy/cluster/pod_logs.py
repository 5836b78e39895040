"""A trial's curve read from its own pod's log, through the API server.

The log is the one channel only the trial's container writes (the kubelet captures its
stdout), so it is what a decision about the trial (pruning) may rest on; pushed progress
is for display. Of a trial only pod 0 (global rank 0) prints evaluations, and of a Job
that retried only its latest pod is the trial's current run. A log is read bounded: at
most `LOG_BYTES` from its start (the trial's start event names its step budget) and, when
it is longer, its last `TAIL_LINES` lines too (the latest evaluations); `read_curve`
keeps each step once and thins the rest.

`get` reads with the user's kubeconfig, the operator with its service account: both need
`get` on `pods/log` and `list` on pods, nothing more.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from scalingstudy.cluster.kube import ApiError, Kube
from scalingstudy.cluster.manifests import (
    COMPLETION_INDEX,
    CONTAINER,
    LABEL_DATA_SIZE,
    LABEL_LEARNING_RATE,
    LABEL_MODEL_SIZE,
    LABEL_SEED,
    LABEL_TRIAL,
    Obj,
)
from scalingstudy.cluster.observe import controlled_by, parse_time
from scalingstudy.curve_rows import CurveTrial
from scalingstudy_sdk.curve import Curve, read_curve

log = logging.getLogger("scalingstudy.operator")

#: The most of a log's start read, and of its end when it is longer.
LOG_BYTES = 1 << 20
TAIL_LINES = 2000
#: (connect, read) seconds of one log read: a node that does not answer costs a pass
#: this much, not the minute of other requests.
LOG_TIMEOUT = (5.0, 20.0)


def _index(pod: Obj) -> str | None:
    return (pod.get("metadata", {}).get("annotations") or {}).get(COMPLETION_INDEX)


def _created(pod: Obj) -> dt.datetime:
    stamp = parse_time(pod.get("metadata", {}).get("creationTimestamp"))
    return stamp or dt.datetime.min.replace(tzinfo=dt.UTC)


def _of_job(pod: Obj, job_uid: str | None, job_name: str | None) -> bool:
    if job_uid:
        return controlled_by(pod, job_uid)
    owners = pod.get("metadata", {}).get("ownerReferences") or []
    return any(
        o.get("controller") and o.get("kind") == "Job" and o.get("name") == job_name for o in owners
    )


def pod_zero(
    pods: Iterable[Obj], job_uid: str | None = None, job_name: str | None = None
) -> Obj | None:
    """The pod whose log is the trial's curve: pod 0 (rank 0; a Job of one pod has no
    index), the latest made (a retried Job's current run), of the trial's Job only: by
    its uid when known (`controlled_by`: labels can be copied by anyone), else by the
    controller reference's name. None: no such pod (not started, or gone)."""
    own = [p for p in pods if _index(p) in (None, "0") and _of_job(p, job_uid, job_name)]
    return max(own, key=_created) if own else None


def pods_by_trial(pods: Iterable[Obj]) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for pod in pods:
        trial = (pod.get("metadata", {}).get("labels") or {}).get(LABEL_TRIAL)
        if trial:
            out.setdefault(trial, []).append(pod)
    return out


def combined(head: str, tail: str | None) -> list[str]:
    """The lines of a log's bounded start and, when it was cut, of its end (a line cut in
    two at the start's limit is dropped; `read_curve` keeps each step once)."""
    lines = head.splitlines()
    if tail is None:
        return lines
    return [*lines[:-1], *tail.splitlines()]


class PodLogs:
    """Reads pod logs (`GET .../pods/{name}/log`) as text."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def _get(self, namespace: str, pod: str, query: dict[str, str]) -> str | None:
        path = f"/api/v1/namespaces/{namespace}/pods/{quote(pod)}/log"
        params = self.kube.api.param_serialize(
            "GET", path, query_params=list(query.items()),
            header_params={"Accept": "*/*"}, auth_settings=["BearerToken"],
        )  # fmt: skip
        self.kube.requests["GET"] += 1
        resp = self.kube.api.call_api(*params, _request_timeout=LOG_TIMEOUT)
        body: bytes = resp.read() or b""  # type: ignore[no-untyped-call]
        if resp.status in (400, 404):  # the pod is gone, or its container never started
            return None
        if resp.status >= 500:  # its node's kubelet did not answer: unknown, this time
            log.warning("the log of pod %s/%s could not be read: HTTP %d: %s", namespace,
                        pod, resp.status, body.decode(errors="replace")[:300])  # fmt: skip
            return None
        if resp.status != 200:
            raise ApiError(resp.status, "GET", path, body.decode(errors="replace"))
        return body.decode(errors="replace")

    def lines(self, namespace: str, pod: str, limit: int = LOG_BYTES) -> list[str] | None:
        """The pod's trainer log, bounded (see the module's doc); None: none to read."""
        head = self._get(namespace, pod, {"container": CONTAINER, "limitBytes": str(limit)})
        if head is None:
            return None
        tail = None
        if len(head.encode()) >= limit:
            query = {"container": CONTAINER, "tailLines": str(TAIL_LINES), "limitBytes": str(limit)}
            tail = self._get(namespace, pod, query)
        return combined(head, tail)

    def curve(self, namespace: str, pod: str) -> Curve | None:
        lines = self.lines(namespace, pod)
        return None if lines is None else read_curve(lines)


def trial_curves(
    logs: PodLogs, namespace: str, pods: Sequence[Obj], trials: Iterable[str]
) -> dict[str, Curve]:
    """The curves of ``trials`` read from their pod 0's log (by the controller reference's
    name: what `get` can see without reading Jobs); a trial without a pod has none."""
    by_trial = pods_by_trial(pods)
    out: dict[str, Curve] = {}
    for trial in trials:
        pod = pod_zero(by_trial.get(trial, ()), job_name=trial)
        if pod is None:
            continue
        curve = logs.curve(namespace, pod["metadata"]["name"])
        if curve is not None:
            out[trial] = curve
    return out


def of_pod(pod: Obj) -> CurveTrial | None:
    """A running trial as its pod's labels place it (None: not a trial's pod)."""
    labels = pod.get("metadata", {}).get("labels") or {}
    try:
        rate = labels.get(LABEL_LEARNING_RATE)
        return CurveTrial(
            labels[LABEL_TRIAL], int(labels[LABEL_DATA_SIZE]), int(labels[LABEL_MODEL_SIZE]),
            int(labels[LABEL_SEED]), None if rate is None else float(rate), "Running",
        )  # fmt: skip
    except (KeyError, ValueError):
        return None
