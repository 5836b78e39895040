"""A trial's curve read from its own pod's log, through the API server.

The log is the one channel only the trial's container writes (the kubelet captures its
stdout), so it is what a decision about the trial (pruning) may rest on; pushed progress
is for display. Of a trial only pod 0 (global rank 0) prints evaluations. A Job that
retried (a pod preempted, evicted, failed) has one pod 0 an attempt, each a part of the
curve: they are read oldest first into one `CurveReader` (a new attempt's start discards
what the earlier one evaluated beyond where it resumed: the SDK's business), so a curve
restarted keeps its first part. A log is read bounded: at most `ATTEMPTS_MAX` attempts
(the first and the latest), `LOG_BYTES` shared among them from each start (the trial's
start event names its step budget) and, when one is longer, its last `TAIL_LINES` lines
too (the latest evaluations); the reader keeps each step once and thins the rest.

`get` reads with the user's kubeconfig, the operator with its service account: both need
`get` on `pods/log` and `list` on pods; `get` also lists the study's Jobs, to read each
trial's pods by its Job's uid (`JobIdentity`), and without that right reads them by the
Job's name.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from scalingstudy.cluster.kube import ApiError, Kube
from scalingstudy.cluster.manifests import (
    COMPLETION_INDEX,
    CONTAINER,
    LABEL_LEARNING_RATE,
    LABEL_TRIAL,
    Obj,
)
from scalingstudy.cluster.observe import (
    controlled_by,
    controller_of,
    label_coordinates,
    label_rate,
    parse_time,
)
from scalingstudy.curve_rows import CurveTrial
from scalingstudy_sdk.curve import Curve, CurveReader

log = logging.getLogger("scalingstudy.operator")

#: The most of a trial's logs' starts read (shared by its attempts), and of an attempt's
#: end when it is longer.
LOG_BYTES = 1 << 20
TAIL_LINES = 2000
#: The most attempts (pods 0 of one Job) whose logs are read: the first and the latest.
ATTEMPTS_MAX = 8
#: The least of an attempt's log start read however many attempts share `LOG_BYTES`.
ATTEMPT_BYTES_MIN = 64 << 10
#: (connect, read) seconds of one log read: a node that does not answer costs a pass
#: this much, not the minute of other requests.
LOG_TIMEOUT = (5.0, 20.0)


def _index(pod: Obj) -> str | None:
    return (pod.get("metadata", {}).get("annotations") or {}).get(COMPLETION_INDEX)


def _created(pod: Obj) -> dt.datetime:
    stamp = parse_time(pod.get("metadata", {}).get("creationTimestamp"))
    return stamp or dt.datetime.min.replace(tzinfo=dt.UTC)


def _job_controller(pod: Obj, name: str) -> Obj | None:
    """The pod's controller reference where it is a Job named ``name``."""
    owner = controller_of(pod)
    return owner if owner and owner.get("kind") == "Job" and owner.get("name") == name else None


def _of_job(pod: Obj, job_uid: str | None, job_name: str | None) -> bool:
    if job_uid:
        return controlled_by(pod, job_uid)
    return job_name is not None and _job_controller(pod, job_name) is not None


def pods_zero(
    pods: Iterable[Obj], job_uid: str | None = None, job_name: str | None = None,
    limit: int = ATTEMPTS_MAX,
) -> list[Obj]:  # fmt: skip
    """The pods whose logs are the trial's curve, oldest first: pod 0 (rank 0; a Job of
    one pod has no index) of every attempt of the trial's Job only: by its uid when known
    (`controlled_by`: labels can be copied by anyone), else by the controller reference's
    name. At most ``limit``: the first attempt (the curve's start) and the latest ones.
    Empty: no such pod (not started, or gone)."""
    own = [p for p in pods if _index(p) in (None, "0") and _of_job(p, job_uid, job_name)]
    own.sort(key=lambda p: (_created(p), p.get("metadata", {}).get("name") or ""))
    if len(own) <= limit:
        return own
    return [own[0], *own[len(own) - (limit - 1) :]] if limit > 1 else own[-1:]


def attempt_bytes(attempts: int) -> int:
    """The start read of each of ``attempts`` logs: `LOG_BYTES` shared, with a floor."""
    return max(LOG_BYTES // max(attempts, 1), ATTEMPT_BYTES_MIN)


def curve_of(attempts: Iterable[Sequence[str]]) -> Curve:
    """One curve of a trial's attempts' log lines, fed oldest first to one reader."""
    reader = CurveReader()
    for lines in attempts:
        for line in lines:
            reader.add(line)
    return reader.curve()


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
        """One pod's curve; None: no log to read."""
        lines = self.lines(namespace, pod)
        return None if lines is None else curve_of([lines])

    def trial_curve(self, namespace: str, pods: Sequence[Obj]) -> Curve | None:
        """The curve of a trial's attempts (`pods_zero`, oldest first); None: no log read."""
        limit = attempt_bytes(len(pods))
        read = [self.lines(namespace, p["metadata"]["name"], limit) for p in pods]
        logs = [lines for lines in read if lines is not None]
        return curve_of(logs) if logs else None


@dataclass(frozen=True)
class JobIdentity:
    """Which Job is each trial's now, as `get` listed them: ``current`` maps a trial (its
    Job's name) to the uid of the study's Job of that name; ``listed`` holds every listed
    Job's uid (an earlier study's of the same name that garbage collection has not
    removed yet included), so that its pods are never taken for a gone Job's."""

    current: Mapping[str, str]
    listed: frozenset[str]
    since: dt.datetime | None = None
    """The study's creation: a pod made before it is an earlier study's of the same name
    (orphaned, or still terminating), never a gone Job of this one."""


def job_identity(
    jobs: Iterable[Obj], study_uid: str, since: dt.datetime | None = None
) -> JobIdentity:
    """The identity of the listed Jobs; only those the study (by uid) controls are its
    trials' (the operator's own test, `Gatherer.jobs`); ``since``: the study's creation."""
    current: dict[str, str] = {}
    listed: set[str] = set()
    for job in jobs:
        meta = job.get("metadata") or {}
        uid, name = meta.get("uid"), meta.get("name")
        if not uid:
            continue
        listed.add(uid)
        if name and controlled_by(job, study_uid):
            current[name] = uid
    return JobIdentity(current, frozenset(listed), since)


def gone_jobs(pods: Iterable[Obj], trial: str, identity: JobIdentity) -> set[str]:
    """The uids of the Jobs named ``trial`` that control some of ``pods`` and are no longer
    listed: runs of the trial whose Job was deleted (pruned, a spec edit, a user)."""
    uids = {str(o.get("uid") or "") for p in pods if (o := _job_controller(p, trial))}
    return {u for u in uids if u and u not in identity.listed}


def trial_attempts(
    trial: str, pods: Sequence[Obj], identity: JobIdentity | None
) -> tuple[list[Obj], bool]:
    """The pods 0 whose logs are ``trial``'s curve for `get`, and whether they are a gone
    Job's. Jobs not listed (``identity`` None): by the controller reference's name, as
    before `get` listed Jobs. The trial's Job listed: its pods only, by uid, so pods an
    earlier Job of that name left (terminating, orphaned) are never merged into its
    curve. Its Job gone: the pods of the one gone Job that controls any of them made
    since the study was (an earlier study of the same name left the others); none when
    two or more did (which run the record is cannot be told)."""
    if identity is None:
        return pods_zero(pods, job_name=trial), False
    uid = identity.current.get(trial)
    if uid:
        return pods_zero(pods, job_uid=uid), False
    if identity.since is not None:
        pods = [p for p in pods if _created(p) >= identity.since]
    gone = gone_jobs(pods, trial, identity)
    return (pods_zero(pods, job_uid=gone.pop()) if len(gone) == 1 else []), True


def same_run(curve: Curve, kept: Curve) -> bool:
    """Whether a log's curve can be the run a record's compact curve was kept from: they
    share at least one step, and at each shared step the same validation loss (the
    compact curve is that run's own points, thinned, keeping its first)."""
    losses = {p.step: p.validation_loss for p in curve.points if p.validation_loss is not None}
    shared = [(losses[p.step], p.validation_loss) for p in kept.points if p.step in losses]
    return bool(shared) and all(
        b is not None and math.isclose(a, b, rel_tol=1e-9) for a, b in shared
    )


def trial_curves(
    logs: PodLogs, namespace: str, pods: Sequence[Obj], trials: Iterable[str],
    identity: JobIdentity | None = None, kept: Mapping[str, Curve] | None = None,
) -> dict[str, Curve]:  # fmt: skip
    """The curves of ``trials`` read from their pods 0's logs (`trial_attempts`: by the
    trial's current Job's uid, by name when Jobs were not listed); a trial without a
    pod has none. A gone Job's curve that contradicts the compact curve the trial's
    record ``kept`` (`same_run`) is another run's and is left out: the record's wins."""
    by_trial = pods_by_trial(pods)
    out: dict[str, Curve] = {}
    for trial in trials:
        attempts, gone = trial_attempts(trial, by_trial.get(trial, ()), identity)
        if not attempts:
            continue
        curve = logs.trial_curve(namespace, attempts)
        if curve is None:
            continue
        record = (kept or {}).get(trial)
        if gone and record is not None and not same_run(curve, record):
            continue
        out[trial] = curve
    return out


def of_pod(pod: Obj) -> CurveTrial | None:
    """A running trial as its pod's labels place it (None: not a trial's pod; unlike a
    Job, a pod with a rate label that is not a number is none)."""
    labels = pod.get("metadata", {}).get("labels") or {}
    coords = label_coordinates(labels)
    rate = label_rate(labels)
    if (
        LABEL_TRIAL not in labels
        or coords is None
        or (LABEL_LEARNING_RATE in labels and rate is None)
    ):
        return None
    return CurveTrial(labels[LABEL_TRIAL], *coords, rate, "Running")
