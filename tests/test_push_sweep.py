"""Which Pushgateway groups the operator's sweep deletes (pure: `stale_groups`)."""

from __future__ import annotations

from scalingstudy.cluster.actions import recorded_trials, stale_groups
from scalingstudy.contract import PROGRESS_PUSH_JOB, PUSH_JOB


def _group(job: str, study: str, trial: str, namespace: str = "ns") -> dict[str, str]:
    return {"job": job, "namespace": namespace, "study": study, "trial": trial}


def test_the_sweep_deletes_what_nothing_will_read_and_keeps_the_rest() -> None:
    live = {("ns", "a"): frozenset({"a-done"}), ("ns", "gone"): None}
    groups = [
        _group(PROGRESS_PUSH_JOB, "a", "a-done"),  # pushed after it was recorded
        _group(PROGRESS_PUSH_JOB, "a", "a-running"),  # the dashboard's running trial
        _group(PUSH_JOB, "a", "a-done"),  # a result: the collector's, not the sweep's
        _group(PUSH_JOB, "a", "a-running"),
        _group(PUSH_JOB, "gone", "gone-x"),
        _group(PROGRESS_PUSH_JOB, "gone", "gone-y"),
        _group(PROGRESS_PUSH_JOB, "a", "a-done", namespace="elsewhere"),  # not looked up
    ]
    assert stale_groups(groups, live) == [groups[0], groups[4], groups[5]]


def test_recorded_trials_are_named_as_their_jobs_are_today() -> None:
    row = {"trial": "s-d100-m4-s0", "dataSize": 100, "modelSize": 4, "seed": 0,
           "status": "Pruned", "metrics": {}}  # fmt: skip
    renamed = {**row, "trial": "old-name"}
    assert recorded_trials("s", {"status": {"results": [row]}}) == {"s-d100-m4-s0"}
    assert recorded_trials("s", {"status": {"results": [renamed]}}) == {"s-d100-m4-s0"}
    assert recorded_trials("s", {}) == frozenset()
