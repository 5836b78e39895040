"""A trial's training curve, read from its own log: every evaluation it printed as a JSON
line (``{"event": "eval", "step": ..., "validation_loss": ...}``, what the built-in
trainer and ``Trial.progress`` write). The log is the one channel only the trial writes
(locally its stdout file, on a cluster its pod's log through the API server), so a curve
read from it can drive a decision; pushed progress is for display. Standard library only:
the operator, the local runner and trainer images share it."""

from __future__ import annotations

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

    def add(self, line: str) -> None:
        """One log line (other output ignored). A step seen again (a trial resumed from
        a checkpoint evaluates it anew) keeps its latest evaluation."""
        event = _event(line)
        if event is None:
            return
        ts = _number(event.get("ts"))
        if self.first_ts is None and ts is not None:
            self.first_ts = ts
        self.budget = _count(event.get("step_budget")) or self.budget
        step = _count(event.get("step"))
        if event.get("event") != EVAL_EVENT or step is None:
            return
        seen = event.get("samples_seen", event.get("items_seen"))
        first = self.first_ts
        self.by_step[step] = CurvePoint(
            step=step,
            samples_seen=_count(seen),
            validation_loss=_number(event.get("validation_loss")),
            train_loss=_number(event.get("train_loss")),
            seconds=None if ts is None or first is None else round(ts - first, 3),
        )

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
    """At most ``limit`` (at least 3) of ``points``: the first, the last, the lowest
    validation loss and the rest evenly spread over the sequence (deterministic, so a
    curve read twice is the same curve)."""
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
    spread = limit - len(keep) + 2  # the first and last are two of the spread
    for k in range(spread):
        if len(keep) >= limit:
            break
        keep.add(round(k * (len(points) - 1) / (spread - 1)))
    return tuple(points[i] for i in sorted(keep))
