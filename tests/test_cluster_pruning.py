"""The operator's pure parts of issue 38 on a cluster: which pod's log is a trial's
curve, curves.csv's rows, and the pruning pass (`cluster/pruning_pass.py`)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from scalingstudy.cluster import curve_rows
from scalingstudy.cluster.manifests import COMPLETION_INDEX, LABEL_TRIAL
from scalingstudy.cluster.pod_logs import combined, pod_zero
from scalingstudy_sdk.curve import Curve, CurvePoint


def _pod(name: str, created: str, *, uid: str = "job-uid", index: str | None = None,
         job: str = "t1") -> dict[str, Any]:  # fmt: skip
    annotations = {} if index is None else {COMPLETION_INDEX: index}
    return {"metadata": {
        "name": name, "creationTimestamp": created, "labels": {LABEL_TRIAL: "t1"},
        "annotations": annotations,
        "ownerReferences": [{"kind": "Job", "name": job, "uid": uid, "controller": True}],
    }}  # fmt: skip


def test_the_curve_is_the_latest_pod_zero_of_the_trials_own_job() -> None:
    pods = [
        _pod("first-try", "2026-01-01T00:00:00Z", index="0"),
        _pod("retry", "2026-01-01T00:05:00Z", index="0"),
        _pod("rank-1", "2026-01-01T00:06:00Z", index="1"),
        # A pod with the trial's labels that another Job (or anyone) made, later still:
        _pod("copy", "2026-01-01T00:07:00Z", uid="other-uid", index="0", job="forger"),
    ]
    chosen = pod_zero(pods, job_uid="job-uid")
    assert chosen is not None and chosen["metadata"]["name"] == "retry"
    by_name = pod_zero(pods, job_name="t1")
    assert by_name is not None and by_name["metadata"]["name"] == "retry"
    assert pod_zero(pods, job_uid="gone-uid") is None


def test_a_cut_log_drops_the_line_cut_in_two() -> None:
    head = '{"step": 1}\n{"step": 2}\n{"st'
    assert combined(head, '{"step": 9}\n') == ['{"step": 1}', '{"step": 2}', '{"step": 9}']
    assert combined("a\nb\n", None) == ["a", "b"]


def test_curves_csv_has_a_row_per_evaluation_in_the_shared_columns(tmp_path: Path) -> None:
    trials = [
        curve_rows.CurveTrial("t1", 100, 4, 0, 0.01, "Running"),
        curve_rows.CurveTrial("t2", 100, 4, 0, None, "Succeeded"),  # no curve: no row
    ]
    curve = Curve((CurvePoint(10, 640, 2.5, 2.7, 1.5), CurvePoint(20, None, float("nan"))))
    table = curve_rows.rows(trials, {"t1": curve})
    path = tmp_path / curve_rows.CURVES_FILE
    curve_rows.write(path, table)
    with path.open() as f:
        read = list(csv.DictReader(f))
    assert tuple(read[0]) == curve_rows.CURVE_COLUMNS
    assert [r["step"] for r in read] == ["10", "20"]
    assert read[0] == {"trial": "t1", "data_size": "100", "model_size": "4", "seed": "0",
                       "learning_rate": "0.01", "status": "Running", "step": "10",
                       "samples_seen": "640", "validation_loss": "2.5", "train_loss": "2.7",
                       "seconds": "1.5"}  # fmt: skip
    assert read[1]["validation_loss"] == "" and read[1]["samples_seen"] == ""
