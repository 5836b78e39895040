"""Leader election on a coordination.k8s.io Lease, so two replicas can run and only one
acts.

The holder renews the Lease every ``retry`` seconds. A standby takes it over once it has
seen no change of the Lease (its resourceVersion) for ``duration`` seconds, measured on
its own clock (so clocks of different nodes need not agree, as in client-go). A leader
that could not renew for ``renew_deadline`` seconds stops acting at once (the process
exits and its pod restarts as a standby): ``renew_deadline < duration`` is what makes the
hand-over free of two leaders, and it holds only if a renew cannot outlast the deadline.
So each Lease request has timeouts of a quarter of the renew deadline (the client's
default read timeout, 60 s, is four leases), and a renew still unanswered when the
deadline passes (a stalled connection) counts as failed: the leader stops at its
deadline, before the standby may take the Lease. Writes use the Lease's resourceVersion, so of two
candidates at most one succeeds. A leader that stops cleanly releases the Lease and the
standby takes over without waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import urllib3

from scalingstudy.cluster.kube import ApiError, Kube
from scalingstudy.cluster.manifests import Obj

log = logging.getLogger("scalingstudy.operator")
#: What a Lease request can end in besides an answer: the API server's error, a socket's,
#: the HTTP client's (a read timeout is urllib3's own, no OSError), or the deadline.
RENEW_ERRORS = (ApiError, OSError, TimeoutError, urllib3.exceptions.HTTPError)
Move = Literal["renew", "take", "wait"]


@dataclass(frozen=True)
class LeaseTiming:
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry < self.renew_deadline < self.duration:
            raise ValueError("leader election needs 0 < retry < renew deadline < duration")

    @property
    def request_timeout(self) -> tuple[float, float]:
        """(connect, read) seconds of one Lease request: a try (GET and PUT) ends well
        inside the renew deadline."""
        each = self.renew_deadline / 4
        return each, each


def move(holder: str, me: str, unchanged_for: float, duration: float) -> Move:
    """What a candidate does with a Lease held by ``holder`` that it has seen unchanged
    for ``unchanged_for`` seconds (pure)."""
    if holder == me:
        return "renew"
    if not holder or unchanged_for > duration:
        return "take"
    return "wait"


def _micro_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self, kube: Kube, namespace: str, name: str, identity: str, timing: LeaseTiming
    ) -> None:
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.timing = timing
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self._seen: tuple[str, float] | None = None  # resourceVersion, when first seen
        self.leading = False

    def _spec(self, old: Obj | None, holder: str) -> Obj:
        spec = dict((old or {}).get("spec") or {})
        now = _micro_time()
        if spec.get("holderIdentity") != holder:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (old is not None)
        spec.update(
            holderIdentity=holder,
            leaseDurationSeconds=max(int(self.timing.duration), 1),
            renewTime=now,
        )
        return spec

    def try_lead(self) -> bool:
        """One attempt to acquire or renew (blocking). True: this process leads now."""
        timeout = self.timing.request_timeout
        status, lease = self.kube.request("GET", self.path, ok=(200, 404), timeout=timeout)
        if status == 404:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, self.identity),
            }
            created, _ = self.kube.request(
                "POST", self.path.rsplit("/", 1)[0], body=body, ok=(201, 409), timeout=timeout
            )
            return created == 201
        version = str(lease["metadata"].get("resourceVersion", ""))
        now = time.monotonic()
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, now)
        holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
        step = move(holder, self.identity, now - self._seen[1], self.timing.duration)
        if step == "wait":
            return False
        lease["spec"] = self._spec(lease, self.identity)
        written, _ = self.kube.request("PUT", self.path, body=lease, ok=(200, 409), timeout=timeout)
        return written == 200

    async def acquire(self) -> None:
        """Wait until this process leads."""
        while True:
            try:
                if await asyncio.to_thread(self.try_lead):
                    self.leading = True
                    log.info("leading (Lease %s/%s as %s)", self.namespace, self.name,
                             self.identity)  # fmt: skip
                    return
            except RENEW_ERRORS as exc:
                log.warning("leader election: %s", exc)
            await asyncio.sleep(self.timing.retry)

    async def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew every retry period; call ``on_lost`` once renewing failed for longer than
        the renew deadline (or another candidate holds the Lease)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.timing.retry)
            left = self.timing.renew_deadline - (time.monotonic() - last)
            try:
                # A renew that outlasts the deadline is a failed one (its thread may
                # linger in a stalled read; nothing waits for it).
                if await asyncio.wait_for(asyncio.to_thread(self.try_lead), max(left, 0.0)):
                    last = time.monotonic()
                    continue
                log.error("leader election: another candidate holds the Lease")
            except RENEW_ERRORS as exc:
                if time.monotonic() - last <= self.timing.renew_deadline:
                    log.warning("leader election: renewing failed (%s); retrying", exc)
                    continue
                log.error("leader election: could not renew for %.0f s", time.monotonic() - last)
            self.leading = False
            on_lost()
            return

    def release(self) -> None:
        """Give the Lease up (clean stop): the standby takes over at its next try."""
        if not self.leading:
            return
        try:
            status, lease = self.kube.request("GET", self.path, ok=(200, 404))
            if status == 200 and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"] = {**lease["spec"], "holderIdentity": "", "renewTime": _micro_time()}
                self.kube.request("PUT", self.path, body=lease, ok=(200, 409))
        except (ApiError, OSError) as exc:
            log.warning("leader election: could not release the Lease: %s", exc)
        self.leading = False
