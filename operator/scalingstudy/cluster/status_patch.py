"""The status write as a JSON merge patch (RFC 7386) from what was read to what is meant.

A merge patch leaves every key it does not name as it was, so sending the new status
alone (without its empty fields) kept fields whose cause was gone: `dataForTarget`
after `targetLoss` was removed, `gammaInterval` after the form changed, a fit the size
guard dropped. The patch here names each such key with an explicit null, and the
change check compares the whole status, so nothing the operator no longer holds stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The patch that turns ``before`` into ``after``: removed keys null, objects
    recursed into, anything else (lists included, as RFC 7386 has it) replaced whole."""
    patch: dict[str, Any] = {key: None for key in before if key not in after}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            inner = merge_patch(old, value)
            if inner:
                patch[key] = inner
        elif key not in before or old != value:
            patch[key] = value
    return patch


def _without_timestamps(status: Mapping[str, Any]) -> dict[str, Any]:
    conditions = status.get("conditions") or []
    return {
        **status,
        "conditions": [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conditions
        ],
    }


def status_changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether writing ``after`` changes anything but condition timestamps: keys that
    would be removed count as changes too."""
    return _without_timestamps(before) != _without_timestamps(after)
