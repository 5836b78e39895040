"""A trial's training curve, read from its own log: every evaluation it printed as a JSON
line (``{"event": "eval", "step": ..., "validation_loss": ...}``, what the built-in
trainer and ``Trial.progress`` write). The log is the one channel only the trial writes
(locally its stdout file, on a cluster its pod's log through the API server), so a curve
read from it can drive a decision; pushed progress is for display. Standard library only:
the operator, the local runner and trainer images share it."""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: The log event of one evaluation, and of a trial's start (which may name its budget).
EVAL_EVENT = "eval"
START_EVENT = "start"
#: At most this many points are kept of one curve: a trial that evaluates 10,000 times
#: keeps a thinned curve (first, last, lowest and evenly spread points between).
MAX_POINTS = 200
#: A reader holds at most this many points before it thins what it holds (a log of a
#: million evaluations is read in bounded memory).
HELD_POINTS = 8 * MAX_POINTS
#: The field of an evaluation line that names the process that printed it (the SDK sets
#: it): a new one is a new attempt of the trial.
RUN_FIELD = "run"


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation: where in training, and the losses measured there."""

    step: int
    samples_seen: int | None = None
    validation_loss: float | None = None
    train_loss: float | None = None
    seconds: float | None = None
    """Since the trial's first log line (its start)."""


@dataclass(frozen=True)
class Curve:
    """A trial's evaluations in step order, and its step budget when the trial said it
    (the built-in trainer's start event, or ``step_budget`` in a progress line)."""

    points: tuple[CurvePoint, ...] = ()
    step_budget: int | None = None

    def best(self) -> float | None:
        """The lowest finite validation loss so far (None before one)."""
        losses = [
            p.validation_loss
            for p in self.points
            if p.validation_loss is not None and math.isfinite(p.validation_loss)
        ]
        return min(losses) if losses else None

    @property
    def last_step(self) -> int | None:
        return self.points[-1].step if self.points else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(value: Any) -> int | None:
    number = _number(value)
    return None if number is None or not math.isfinite(number) else int(number)


def _event(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    return event if isinstance(event, dict) else None


class CurveReader:
    """A curve read line by line as a log grows (the local runner follows a running
    trial's log, reading only what was appended). ``read_curve`` is this over a whole
    log, so a curve followed live is the curve read at the end."""

    def __init__(self) -> None:
        self.by_step: dict[int, CurvePoint] = {}
        self.budget: int | None = None
        self.first_ts: float | None = None
        self.run: object = None
        self.restart: int | None = None
        """Set by a new attempt of the trial (its start event, or a new run in its
        evaluations): the step it resumed from, -1 when not said; applied at its first
        evaluation."""

    def add(self, line: str) -> None:
        """One log line (other output ignored). A log holds every attempt of a trial (the
        runner appends, a cluster trial's pods are read oldest first): a new attempt drops
        the earlier one's points past where it resumed (its start event's
        ``resumed_from_step``, else before its first evaluation); a step seen again keeps
        its latest evaluation."""
        event = _event(line)
        if event is None:
            return
        ts = _number(event.get("ts"))
        if self.first_ts is None and ts is not None:
            self.first_ts = ts
        budget = _count(event.get("step_budget"))
        self.budget = budget if budget is not None and budget > 0 else self.budget
        kind = event.get("event")
        if kind == START_EVENT:
            resumed = _count(event.get("resumed_from_step"))
            self.restart = resumed if resumed is not None and resumed >= 0 else -1
        step = _count(event.get("step"))
        if kind != EVAL_EVENT or step is None or step < 0:
            return
        run = event.get(RUN_FIELD)
        if run is not None and not isinstance(run, dict | list):
            if self.run is not None and run != self.run and self.restart is None:
                self.restart = -1
            self.run = run
        if self.restart is not None:
            cut = self.restart if self.restart >= 0 else step - 1
            self.by_step = {s: p for s, p in self.by_step.items() if s <= cut}
            self.restart = None
        seen = event.get("samples_seen", event.get("items_seen"))
        first = self.first_ts
        self.by_step[step] = CurvePoint(
            step=step,
            samples_seen=_count(seen),
            validation_loss=_number(event.get("validation_loss")),
            train_loss=_number(event.get("train_loss")),
            seconds=None if ts is None or first is None else round(ts - first, 3),
        )
        if len(self.by_step) > HELD_POINTS:
            held = thin([self.by_step[s] for s in sorted(self.by_step)], HELD_POINTS // 2)
            self.by_step = {p.step: p for p in held}

    def curve(self, limit: int = MAX_POINTS) -> Curve:
        """The curve so far, in step order, thinned to at most ``limit`` points."""
        points = tuple(self.by_step[s] for s in sorted(self.by_step))
        return Curve(thin(points, limit), self.budget)


def read_curve(lines: Iterable[str], limit: int = MAX_POINTS) -> Curve:
    """The curve in a trial's log lines (other output ignored). A step seen again (a
    trial resumed from a checkpoint evaluates it anew) keeps its latest evaluation."""
    reader = CurveReader()
    for line in lines:
        reader.add(line)
    return reader.curve(limit)


def thin(points: Sequence[CurvePoint], limit: int = MAX_POINTS) -> tuple[CurvePoint, ...]:
    """At most ``limit`` (at least 3) of ``points`` (in step order): the first, the last,
    the lowest validation loss and, between, the points nearest to steps evenly spread
    over the run (deterministic, so a curve read twice is the same curve; spread by step,
    so a curve thinned as it was read is spread like one thinned at the end)."""
    limit = max(limit, 3)
    if len(points) <= limit:
        return tuple(points)
    keep = {0, len(points) - 1}
    finite = [
        i
        for i, p in enumerate(points)
        if p.validation_loss is not None and math.isfinite(p.validation_loss)
    ]
    if finite:
        keep.add(min(finite, key=lambda i: points[i].validation_loss or 0.0))
    steps = [p.step for p in points]
    first, last = steps[0], steps[-1]
    spread = limit - len(keep) + 2  # the first and last are two of the spread
    for k in range(1, spread - 1):
        if len(keep) >= limit:
            break
        target = first + k * (last - first) / (spread - 1)
        i = bisect.bisect_left(steps, target)
        nearest = (
            i
            if i < len(steps) and (i == 0 or steps[i] - target <= target - steps[i - 1])
            else i - 1
        )
        keep.add(nearest)
    return tuple(points[i] for i in sorted(keep))
