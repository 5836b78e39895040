"""Which Events are written, decided without I/O: repeated ones folded into one with a count,
as client-go's recorder folds them, so a 1,000-trial study costs a few Event writes, not
two a pass.

An Event that says what the status already says every pass (trials started, trials
succeeded, a new interim fit) is written the first time, then at most once a
``FOLD_WINDOW`` per study and reason: what came in between is held and written as one
Event that names every trial folded into it (its ``count`` is how many Events it stands
for, ``firstTimestamp`` the first one's time). Any other Event is written at once, unless
it repeats the last one of its reason word for word within the window: then only its
count grows. Phase changes and refusals are written at once, after every Event held for
the study, so what `kubectl describe` shows ends in the order it happened and nothing
held is lost when the study ends. The client-go recorder drops what its rate limit
refuses; nothing is dropped here, only written later (with its own timestamps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from scalingstudy.cluster.reasons import Event, EventReason, Failure, Refusal
from scalingstudy.cluster.study_events import TrialsEvent

#: Seconds between two writes of one fold key of a study (client-go's spam filter refills
#: one Event per object every 300 s).
FOLD_WINDOW = 300.0
#: Events that say what the status says each pass: folded into one a window.
PROGRESS = frozenset({EventReason.TRIALS_STARTED, EventReason.TRIALS_SUCCEEDED,
                      EventReason.FIT_UPDATED})  # fmt: skip
#: Events of a phase change or a refusal: written at once, after what is held.
FLUSHING = frozenset({EventReason.STUDY_SUCCEEDED, EventReason.STUDY_FAILED, *Refusal, *Failure})


@dataclass(frozen=True)
class Write:
    """One Event to create: it stands for ``count`` occurrences, the first at ``first``
    and the last at ``last`` (RFC 3339)."""

    event: Event
    count: int
    first: str
    last: str


@dataclass(frozen=True)
class Slot:
    """One fold key's memory: when its last Event was written (monotonic seconds) and what
    is held since (None: nothing)."""

    written_at: float
    held: Write | None = None


#: A study's slots by fold key.
Slots = Mapping[str, Slot]


def fold_key(event: Event) -> str:
    """Progress Events fold by reason (a newer one says more); others only with an Event
    of the same type, reason and message."""
    if event.reason in PROGRESS:
        return str(event.reason)
    return f"{event.type}\x00{event.reason}\x00{event.message}"


def merged(held: Write, event: Event, stamp: str) -> Write:
    """``event`` folded into what is held: trials named together, the newest fit's words."""
    old = held.event
    if isinstance(old, TrialsEvent) and isinstance(event, TrialsEvent):
        event = old.merged(event)
    return Write(event, held.count + 1, held.first, stamp)


def _due(slots: Slots, now: float, window: float, everything: bool) -> tuple[dict[str, Slot],
                                                                          list[Write]]:  # fmt: skip
    """Write what is held whose window has passed (``everything``: all that is held), in
    the order the slots were first used."""
    out, writes = dict(slots), []
    for key, slot in slots.items():
        if slot.held is not None and (everything or now - slot.written_at >= window):
            writes.append(slot.held)
            out[key] = Slot(now)
    return out, writes


def fold(
    slots: Slots, event: Event, now: float, stamp: str, window: float = FOLD_WINDOW
) -> tuple[dict[str, Slot], list[Write]]:
    """A study's slots after ``event`` arrived at ``now`` (monotonic seconds; ``stamp``:
    the same moment in RFC 3339), and the Events to create now, in order. The event is
    held with its like; whatever is held and due is written (a phase change or refusal:
    all that is held, then itself)."""
    out = dict(slots)
    slot = out.get(fold_key(event), Slot(-math.inf))  # never written: due at once
    held = Write(event, 1, stamp, stamp) if slot.held is None else merged(slot.held, event, stamp)
    out[fold_key(event)] = replace(slot, held=held)
    return _due(out, now, window, everything=event.reason in FLUSHING)


def flush(slots: Slots, now: float, window: float = FOLD_WINDOW) -> tuple[dict[str, Slot],
                                                                         list[Write]]:  # fmt: skip
    """The Events held whose window has passed: for a pass that had nothing to say."""
    return _due(slots, now, window, everything=False)


def idle(slots: Slots, now: float, window: float = FOLD_WINDOW) -> bool:
    """Whether nothing is held and every window has passed: the study's memory can go."""
    return all(s.held is None and now - s.written_at >= window for s in slots.values())
