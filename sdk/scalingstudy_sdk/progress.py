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
import numbers
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from scalingstudy_sdk import contract
from scalingstudy_sdk.report import (
    exposition,
    group_url,
    number,
    put_group,
    redacted,
    size_labels,
)

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


def _whole(value: Any) -> int | None:
    """A step as an int: an integer, or a float (numpy's too) with no fraction."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        x = float(value)
        return int(x) if math.isfinite(x) and x.is_integer() else None
    return None


class StepCurve:
    """A running trial's (step, validation loss) pairs for the dashboard, bounded: the
    evaluations whose index is a multiple of a stride that doubles each time more than
    ``limit`` are kept (every other kept one is dropped). Only kept steps are shown while
    the trial runs, and a step once dropped is never kept again, so the series a scraper
    ever sees of a trial grow with the log of its evaluations (``limit`` and half of it
    more per halving: 32 and 10,000 evaluations, about 170), not one per push; the
    latest evaluation joins them at the end (`points`)."""

    def __init__(self, limit: int = contract.CURVE_POINTS) -> None:
        self.limit = max(limit, 2)
        self._reset()

    def _reset(self) -> None:
        self.stride, self.seen = 1, 0
        self.kept: list[tuple[int, float]] = []
        self.latest: tuple[int, float] | None = None

    def add(self, fields: Mapping[str, Any]) -> None:
        """One evaluation (ignored without a whole step and a numeric loss). Another at
        the latest one's step replaces it; a step below it starts a new run."""
        step, loss = _whole(fields.get("step")), fields.get(contract.METRIC)
        if step is None or not isinstance(loss, numbers.Real) or isinstance(loss, bool):
            return
        point = (step, float(loss))
        if self.latest is not None and step <= self.latest[0]:
            if step == self.latest[0]:
                self.latest = point
                if self.kept and self.kept[-1][0] == step:
                    self.kept[-1] = point
                return
            self._reset()
        if self.seen % self.stride == 0:
            self.kept.append(point)
            if len(self.kept) > self.limit:
                self.kept, self.stride = self.kept[::2], self.stride * 2
        self.seen += 1
        self.latest = point

    def points(self, final: bool = False) -> list[tuple[int, float]]:
        """The kept pairs in step order; ``final`` (training ended): with the latest."""
        if final and self.latest is not None and self.latest not in self.kept:
            return [*self.kept, self.latest]
        return list(self.kept)

    def ends_shown(self, shown: list[tuple[int, float]]) -> bool:
        """Whether ``shown`` ends with the latest evaluation."""
        return self.latest is None or (bool(shown) and shown[-1] == self.latest)


def curve_exposition(points: Iterable[tuple[int, float]], env: Mapping[str, str]) -> str:
    """`StepCurve.points` as `contract.CURVE_GAUGE` samples in Prometheus' text format."""
    points = list(points)
    if not points:
        return ""
    labels = size_labels(env)
    lines = [
        f"# HELP {contract.CURVE_GAUGE} Validation loss of a running scaling-study "
        "trial at each step (a thinned curve)",
        f"# TYPE {contract.CURVE_GAUGE} gauge",
    ]
    lines += [f'{contract.CURVE_GAUGE}{{{labels},step="{step}"}} {number(loss)}'
              for step, loss in points]  # fmt: skip
    return "\n".join(lines) + "\n"


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
        #: The latest evaluation's gauges, and the curve points last pushed.
        self.values: dict[str, float] = {}
        self.shown: list[tuple[int, float]] = []
        self.pushed = 0
        self.failed = 0
        self.sender: threading.Thread | None = None
        self.curve = StepCurve()

    @property
    def enabled(self) -> bool:
        return bool(self.gateway)

    def offer(self, fields: Mapping[str, Any]) -> bool:
        """One evaluation: pushed now when the interval since the last attempt has passed,
        else kept as the pending latest one. Whether it was pushed."""
        values = progress_values(fields)
        if not self.enabled or not values:
            return False
        self.curve.add(fields)
        self.pending = self.values = values
        if self.clock() - self.last_attempt < self.interval:
            return False
        return self._push()

    def flush(self) -> bool:
        """Push the latest evaluation the throttle held back, and the curve with it
        (the end of training: the dashboard shows where the trial stopped). Whether one
        was pushed."""
        if not self.enabled or not self.values:
            return False
        held = self.pending is not None or not self.curve.ends_shown(self.shown)
        return held and self._push(final=True)

    def _push(self, final: bool = False) -> bool:
        """One attempt, in a thread that training waits on for ``timeout`` at most (a
        gateway that answers a byte at a time, or a name that takes long to resolve,
        would hold a plain request far longer): past it the attempt is a failure and the
        thread is left to end on its own; none starts beside one still hanging."""
        values, self.pending = self.values, None
        points = self.curve.points(final)
        self.last_attempt = self.clock()
        if self.sender is not None and self.sender.is_alive():
            return False
        outcome: list[BaseException | None] = []

        def send() -> None:
            try:
                url = group_url(self.gateway, contract.PROGRESS_PUSH_JOB, self.env)
                text = exposition(values, self.env, which="Latest")
                put_group(url, text + curve_exposition(points, self.env), self.timeout)
                outcome.append(None)
            except Exception as exc:  # progress must never cost the trial
                outcome.append(exc)

        self.sender = threading.Thread(target=send, name="progress-push", daemon=True)
        self.sender.start()
        self.sender.join(self.timeout)
        if outcome and outcome[0] is None:
            self.pushed += 1
            self.shown = points
            return True
        error = outcome[0] if outcome else TimeoutError(f"no answer within {self.timeout} s")
        self.failed += 1
        if self.failed == 1:
            print(json.dumps({"event": "progress_push_failed",
                              "gateway": redacted(self.gateway),
                              "error": f"{type(error).__name__}: {error}"}),
                  file=sys.stderr, flush=True)  # fmt: skip
        return False
