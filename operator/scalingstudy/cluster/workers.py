"""When passes run: one worker task per study, passes one at a time.

A worker is woken by events on the study or its Jobs and at least every
`resync_seconds`; events arriving together are coalesced into one pass (`batch_window`),
which is what keeps API writes per trial low. A pass runs in a thread because the
Kubernetes client and the fit are blocking, and a pass that raises is logged and retried:
one study's trouble never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scalingstudy.cluster.metrics import OperatorMetrics

log = logging.getLogger("scalingstudy.operator")
Key = tuple[str, str]
RETRY_SECONDS = 5.0


@dataclass
class Health:
    """Whether passes keep failing. A pass that succeeds clears it; when every pass has
    failed for longer than the liveness allows, /healthz says so (an operator with no
    study to pass is healthy)."""

    failing_since: float | None = None
    last_error: str = ""

    def passed(self) -> None:
        self.failing_since = None

    def failed(self, error: str) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = error

    def problem(self, stale_after: float) -> str | None:
        if self.failing_since is None:
            return None
        failing = time.monotonic() - self.failing_since
        if failing <= stale_after:
            return None
        return f"every reconcile pass failed for {failing:.0f} s; last: {self.last_error}"


@dataclass(frozen=True)
class Wake:
    """After a pass: whether the study still exists, and when to look again."""

    exists: bool
    in_seconds: float | None = None


class StudyWorkers:
    def __init__(
        self,
        reconcile: Callable[[str, str], Wake],
        forget: Callable[[str, str], None],
        metrics: OperatorMetrics,
        requests: Mapping[str, int],
        resync_seconds: float,
        batch_window: float,
    ) -> None:
        self.reconcile, self.forget, self.metrics = reconcile, forget, metrics
        self.requests = requests
        self.resync_seconds, self.batch_window = resync_seconds, batch_window
        self.tasks: dict[Key, asyncio.Task[None]] = {}
        self.triggers: dict[Key, asyncio.Event] = {}
        self.health = Health()

    def poke(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.triggers.setdefault(key, asyncio.Event()).set()
        if key not in self.tasks or self.tasks[key].done():
            self.tasks[key] = asyncio.create_task(self._work(key), name=f"study {key}")

    def drop(self, namespace: str, name: str) -> None:
        task = self.tasks.pop((namespace, name), None)
        if task is not None:
            task.cancel()
        self.triggers.pop((namespace, name), None)
        self.forget(namespace, name)

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _work(self, key: Key) -> None:
        trigger, wait = self.triggers[key], 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(trigger.wait(), timeout=wait)
            await asyncio.sleep(self.batch_window)
            trigger.clear()
            wake = await self._pass(key)
            if not wake.exists:
                self.triggers.pop(key, None)
                self.tasks.pop(key, None)
                self.forget(*key)
                return
            wait = min(self.resync_seconds, wake.in_seconds or self.resync_seconds)

    async def _pass(self, key: Key) -> Wake:
        started = time.monotonic()
        try:
            wake = await asyncio.to_thread(self.reconcile, *key)
            self.metrics.reconciles.labels("ok").inc()
            self.health.passed()
        except Exception as exc:  # one study's trouble must never stop the others
            log.exception("reconcile of %s/%s failed; retrying", *key)
            self.metrics.reconciles.labels("error").inc()
            self.health.failed(f"{key[0]}/{key[1]}: {exc}"[:300])
            wake = Wake(True, in_seconds=RETRY_SECONDS)
        finally:
            self.metrics.pass_done(time.monotonic() - started, self.requests)
        return wake
