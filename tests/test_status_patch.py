"""The status writer's patch: what the operator no longer holds is removed (issue 26 A)."""

from __future__ import annotations

from scalingstudy.cluster.status_patch import merge_patch, status_changed
from scalingstudy.status import ScalingStudyStatus


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


# A finished study's status as the API server returns it (its JSON writes whole floats as
# integers), trimmed to two results (issue 40, item 6).
READ = {
    "phase": "Running", "observedGeneration": 1,
    "conditions": [
        {"type": "SpecValid", "status": "True", "reason": "Valid",
         "lastTransitionTime": "2026-12-06T15:17:33Z", "observedGeneration": 1},
        {"type": "Progressing", "status": "True", "reason": "TrialsRunning",
         "lastTransitionTime": "2026-12-06T15:17:33Z", "observedGeneration": 1},
    ],
    "trials": {"total": 3, "pending": 0, "queued": 0, "running": 1, "succeeded": 2, "failed": 0,
               "pruned": 0},
    "progress": "2/3",
    "results": [
        {"trial": f"s-d100-m2-s{seed}", "dataSize": 100, "modelSize": 2, "seed": seed,
         "loss": 0.340058, "parameters": 200, "status": "Succeeded", "durationSeconds": 1,
         "source": "termination-message", "verified": True}
        for seed in (0, 1)
    ],
    "design": {"strategy": "grid", "trialsStarted": 3, "gridTrials": 3, "trialsSkipped": 0,
               "gpuSeconds": 0, "device": "cpu", "deviceSeconds": 2, "windows": [],
               "outOfRange": [], "stageFits": [], "learningRates": [], "cancelled": [],
               "cancelledSeconds": 0.0},
}  # fmt: skip


def test_a_pass_that_finds_nothing_new_writes_nothing() -> None:
    """The status rebuilt from what was read (every pass of a study that waits on its
    trials, and every resync) is no write: status patches at 1,000 instant trials are
    only passes with new results or counts (0.147 a trial)."""
    rebuilt = ScalingStudyStatus.lenient(READ).to_json()
    assert not status_changed(READ, rebuilt)
    assert merge_patch(READ, rebuilt) == {}
    retimed = ScalingStudyStatus.lenient(READ)
    retimed.conditions[1].last_transition_time = "2026-12-06T15:20:00Z"
    assert not status_changed(READ, retimed.to_json())


def test_a_pass_with_one_new_count_patches_that_count_alone() -> None:
    after = {**READ, "trials": {**READ["trials"], "running": 0, "pending": 1}}  # type: ignore[dict-item]
    assert status_changed(READ, after)
    assert merge_patch(READ, after) == {"trials": {"running": 0, "pending": 1}}
