"""A study status with every part filled, produced by the real pass and a real fit: what
the operator writes at the end of a grid study with a target loss, failures and the
joint law. Shared by the schema test and the API-server round trip."""

from __future__ import annotations

import numpy as np

from scalingstudy.cluster.reconcile import decide, fit_settings
from scalingstudy.cluster.status_builder import build_status
from scalingstudy.fitting import FitOptions, fit_points
from scalingstudy.planning.plan import Plan
from scalingstudy.results import points_of
from scalingstudy.spec import parse_spec
from scalingstudy.status import FitStatus, ScalingStudyStatus, TrialRecord


def full_status() -> ScalingStudyStatus:
    spec = parse_spec(
        {
            "task": {"name": "teacher-student"},
            "dataSizes": {"min": 1000, "max": 64000, "factor": 2},
            "modelSizes": {"values": [10000, 40000, 160000]},
            "maxFailedTrials": 3,
        }
    )
    plan = Plan.of("sample", spec)
    rng = np.random.default_rng(0)
    records: dict[str, TrialRecord] = {}
    for t in plan:
        if t.data_size == 1000 and t.model_size == 10000:
            records[t.name] = TrialRecord.failed(t, "OOMKilled", "exit code 137", 12.5)
            continue
        loss = 1.7 + 400 * t.model_size**-0.34 + 900 * t.data_size**-0.28
        records[t.name] = TrialRecord(
            trial=t.name, data_size=t.data_size, model_size=t.model_size, seed=t.seed,
            status="Succeeded", loss=float(loss * np.exp(rng.normal(0, 0.01))),
            parameters=t.model_size, train_loss=float(loss * 0.9), steps=300,
            samples_seen=300 * 32, duration_seconds=41.2, source="prometheus",
        )  # fmt: skip
    p = decide(plan, [], records, [], parallelism=4, max_failed=3, fit=None)
    report = fit_points(
        points_of(p.relevant()),
        FitOptions(bootstrap=40, predict_at=(1e6, 1e7), target_loss=2.0, joint=True),
    )
    fit = FitStatus.of(
        report, final=p.final, based_on_results=p.succeeded, settings=fit_settings(spec)
    )
    return build_status(p, 1, ScalingStudyStatus(), fit, None, "2026-12-01T00:00:00Z")


def largest_status() -> ScalingStudyStatus:
    """The largest status a study can have: MAX_TRIALS trials, every one failed with the
    longest name, the largest coordinates, the longest reason and a message of the worst
    kind (multi-byte characters and newlines), and the full fit."""
    from scalingstudy.cluster.spend import LEDGER_MAX
    from scalingstudy.contract import REASON_BYTES
    from scalingstudy.planning.plan import MAX_NAME, Trial
    from scalingstudy.spec import MAX_TRIALS
    from scalingstudy.status import CancelledRun, DesignStatus

    full = full_status()
    rows = []
    for i in range(MAX_TRIALS):
        name = f"{i:05d}-" + "x" * (MAX_NAME - 6)
        trial = Trial(2**53 - i, 2**53 - 1, 31, name=name)
        rows.append(TrialRecord.failed(trial, "R" * 200, ("é\n\x07" * 400) + "the end", 86_399.999))
    assert len(rows[0].reason or "") == REASON_BYTES
    # Every row preempted before (earlierSeconds), and the most cancelled runs kept.
    rows = [r.model_copy(update={"earlier_seconds": 86_399.999}) for r in rows]
    runs = [CancelledRun(trial=f"{i:05d}-" + "x" * (MAX_NAME - 6), job_uid="u" * 36,
                         seconds=86_399.999) for i in range(LEDGER_MAX)]  # fmt: skip
    design = DesignStatus(strategy="grid", trials_started=MAX_TRIALS, grid_trials=MAX_TRIALS,
                          trials_skipped=0, gpu_seconds=1e12, cancelled=runs,
                          cancelled_seconds=1e12)  # fmt: skip
    return full.model_copy(update={"results": rows, "design": design})
