"""A running trial's latest evaluation pushed to the Pushgateway, for the dashboard.

Display only: the trial's own log is its authoritative curve (``curve.read_curve``), and
the push goes to a group of its own (job ``scalingstudy-progress``) under the result's
gauge names, so the operator, which reads results only from job ``scalingstudy``, never
takes progress for a result. A push costs training at most one bounded attempt: it is
throttled (one per ``PROGRESS_PUSH_SECONDS``, the latest evaluation kept for the next
chance and for ``flush`` at the end), a failure is one line on stderr the first time and
never an exception, and a gateway that failed is not tried again before the interval."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from scalingstudy_sdk import contract
from scalingstudy_sdk.report import exposition, group_url, put_group, redacted

#: The longest one progress push may take (connect and answer): training waits for it.
PROGRESS_TIMEOUT_SECONDS = 2.0


def progress_values(fields: Mapping[str, Any]) -> dict[str, float]:
    """The gauges of one evaluation (result keys: ``step`` is pushed as ``steps``); a
    value that is not a number is left out, NaN or infinite is kept (a diverging trial)."""
    out: dict[str, float] = {}
    for key, result_key in contract.PROGRESS_GAUGE_KEYS.items():
        value = fields.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[result_key] = float(value)
    return out


class ProgressPush:
    """The throttled push of one trial's evaluations (a no-op without a Pushgateway)."""

    def __init__(
        self,
        env: Mapping[str, str],
        interval: float = contract.PROGRESS_PUSH_SECONDS,
        timeout: float = PROGRESS_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.env = dict(env)
        self.gateway = self.env.get(contract.ENV_PUSHGATEWAY, "")
        self.interval, self.timeout, self.clock = interval, timeout, clock
        self.last_attempt = -math.inf
        self.pending: dict[str, float] | None = None
        self.pushed = 0
        self.failed = 0
        self.sender: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.gateway)

    def offer(self, fields: Mapping[str, Any]) -> bool:
        """One evaluation: pushed now when the interval since the last attempt has passed,
        else kept as the pending latest one. Whether it was pushed."""
        values = progress_values(fields)
        if not self.enabled or not values:
            return False
        self.pending = values
        if self.clock() - self.last_attempt < self.interval:
            return False
        return self._push()

    def flush(self) -> bool:
        """Push the latest evaluation the throttle held back (the end of training: the
        dashboard shows where the trial stopped). Whether one was pushed."""
        return self.enabled and self.pending is not None and self._push()

    def _push(self) -> bool:
        """One attempt, in a thread that training waits on for ``timeout`` at most (a
        gateway that answers a byte at a time, or a name that takes long to resolve,
        would hold a plain request far longer): past it the attempt is a failure and the
        thread is left to end on its own; none starts beside one still hanging."""
        values, self.pending = self.pending or {}, None
        self.last_attempt = self.clock()
        if self.sender is not None and self.sender.is_alive():
            return False
        outcome: list[BaseException | None] = []

        def send() -> None:
            try:
                url = group_url(self.gateway, contract.PROGRESS_PUSH_JOB, self.env)
                put_group(url, exposition(values, self.env, which="Latest"), self.timeout)
                outcome.append(None)
            except Exception as exc:  # progress must never cost the trial
                outcome.append(exc)

        self.sender = threading.Thread(target=send, name="progress-push", daemon=True)
        self.sender.start()
        self.sender.join(self.timeout)
        if outcome and outcome[0] is None:
            self.pushed += 1
            return True
        error = outcome[0] if outcome else TimeoutError(f"no answer within {self.timeout} s")
        self.failed += 1
        if self.failed == 1:
            print(json.dumps({"event": "progress_push_failed",
                              "gateway": redacted(self.gateway),
                              "error": f"{type(error).__name__}: {error}"}),
                  file=sys.stderr, flush=True)  # fmt: skip
        return False
