"""Counts and device time in words, the same in every text a user reads (the dry run,
the design line, Events): "1 trial", "2 trials", "0.5 CPU-hours"."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count noun`` with the noun's plural unless the count is 1 ("1 seed", "2 seeds")."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def device_hours(seconds: float | None, unit: str) -> str:
    """Device-seconds as hours of the unit ("0.00597 CPU-hours"); unknown when None."""
    return "unknown" if seconds is None else f"{seconds / 3600:.3g} {unit}-hours"
