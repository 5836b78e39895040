"""The status writer's patch: what the operator no longer holds is removed (issue 26 A)."""

from __future__ import annotations

from scalingstudy.cluster.status_patch import merge_patch, status_changed


def _apply(target: dict, patch: dict) -> dict:  # type: ignore[type-arg]
    """RFC 7386 as the API server applies it."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _apply(out[key], value)
        else:
            out[key] = value
    return out


BEFORE = {
    "phase": "Succeeded",
    "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "t1"}],
    "fit": {
        "learningCurve": {"beta": -0.3, "gammaInterval": [0.01, 0.02]},
        "dataForTarget": {"targetLoss": 0.5, "dataSize": 100000},
    },
    "results": [{"trial": "a"}],
}


def test_a_field_whose_cause_is_gone_is_removed_by_the_patch() -> None:
    after = {
        "phase": "Succeeded",
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "t1"}],
        "fit": {"learningCurve": {"beta": -0.31}},
        "results": [{"trial": "a"}],
    }
    patch = merge_patch(BEFORE, after)
    assert patch == {
        "fit": {"learningCurve": {"beta": -0.31, "gammaInterval": None}, "dataForTarget": None}
    }
    assert _apply(BEFORE, patch) == after
    assert status_changed(BEFORE, after)


def test_a_dropped_fit_is_removed_and_only_timestamps_are_no_change() -> None:
    after = {k: v for k, v in BEFORE.items() if k != "fit"}
    assert merge_patch(BEFORE, after) == {"fit": None}
    assert status_changed(BEFORE, after)  # the old check compared only the new keys
    retimed = {**BEFORE, "conditions": [{**BEFORE["conditions"][0], "lastTransitionTime": "t2"}]}
    assert not status_changed(BEFORE, retimed)
    assert merge_patch(BEFORE, BEFORE) == {}
