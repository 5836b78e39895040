"""When to try again something that failed for a reason of its own, not of the data (a fit
that timed out or whose process crashed): after ``first`` seconds, doubling up to
``longest``, forgotten on success. Pure: the caller passes the clock."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    first: float = 10.0
    longest: float = 300.0
    _waits: dict[Hashable, tuple[float, float]] = field(default_factory=dict)
    """key -> (the last wait, when the next try is due)."""

    def wait(self, key: Hashable, now: float) -> float | None:
        """Seconds until ``key`` may be tried again (None: now)."""
        entry = self._waits.get(key)
        if entry is None or now >= entry[1]:
            return None
        return entry[1] - now

    def failed(self, key: Hashable, now: float) -> float:
        """Record a failure; returns the wait before the next try."""
        last = self._waits.get(key, (0.0, 0.0))[0]
        wait = min(max(2 * last, self.first), self.longest)
        self._waits[key] = (wait, now + wait)
        return wait

    def succeeded(self, key: Hashable) -> None:
        self._waits.pop(key, None)

    def forget(self, prefix: tuple[str, str]) -> None:
        """Drop every key of a study (keys are tuples starting with namespace, name)."""
        for key in [k for k in self._waits if isinstance(k, tuple) and k[:2] == prefix]:
            del self._waits[key]
