"""Spend as the trials used it: device-seconds in the device the trials request (GPUs when
their pods ask for any, else the CPUs each pod requests or is limited to, 1 when it says
nothing), the same number in the status, the metrics, the budget check and every text."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.cluster.study_events import design_events
from scalingstudy.contract import TrialResult
from scalingstudy.planning.cost import trial_devices
from scalingstudy.planning.design import Design, design
from scalingstudy.planning.dry_run import describe
from scalingstudy.planning.plan import Trial, plan_trials
from scalingstudy.render.table import design_line
from scalingstudy.spec import SpecError, parse_spec, parse_study
from scalingstudy.status import ScalingStudyStatus, TrialRecord
from tests.conftest import run_cli

HERE = Path(__file__).resolve().parent
DATA = [100, 200, 400]
MODELS = [2, 4]


def _spec_doc(trainer: dict[str, Any] | None = None, **design_spec: Any) -> dict[str, Any]:
    return {
        "task": {"name": "simulated"},
        "trainer": {"command": ["simulated"], **(trainer or {})},
        "dataSizes": {"values": DATA},
        "modelSizes": {"values": MODELS},
        "design": design_spec,
    }


def _result(model_size: int) -> TrialResult:
    return TrialResult(loss=1.0, parameters=100 * model_size)


def _finished(spec_doc: dict[str, Any], seconds: float, count: int = 1) -> Design:
    """The design once the first ``count`` grid trials finished in ``seconds`` each."""
    spec = parse_spec(spec_doc)
    grid = plan_trials("s", spec)[:count]
    records = {
        t.name: TrialRecord.succeeded(
            t, TrialResult(loss=1.0, parameters=100 * t.model_size), seconds
        )
        for t in grid
    }
    return design("s", spec, records, set(), {})


def test_a_cpu_study_spends_cpu_seconds_and_no_gpu_seconds() -> None:
    # the case: 4 CPU pods for 900 s counted 3,600 GPU-seconds
    status = _finished(_spec_doc({"nodes": 4}), 900.0).status
    assert status.device == "cpu"
    assert status.device_seconds == 3600.0
    assert status.gpu_seconds == 0.0 and status.grid_gpu_seconds == 0.0
    assert status.grid_device_seconds is not None and status.grid_device_seconds > 3600.0


@pytest.mark.parametrize(
    ("resources", "cpus"),
    [
        ({}, 1.0),
        ({"requests": {"cpu": "500m"}}, 0.5),
        ({"limits": {"cpu": 2}}, 2.0),
        ({"requests": {"cpu": "1.5"}, "limits": {"cpu": "4"}}, 1.5),
    ],
)
def test_cpu_seconds_count_the_cpus_each_pod_requests(
    resources: dict[str, Any], cpus: float
) -> None:
    status = _finished(_spec_doc({"nodes": 2, "resources": resources}), 100.0).status
    assert status.device == "cpu"
    assert status.device_seconds == pytest.approx(100.0 * 2 * cpus)


def test_a_gpu_study_counts_the_gpus_of_every_pod_in_every_field() -> None:
    resources = {"limits": {"nvidia.com/gpu": 2, "cpu": 8}}
    doc = _spec_doc({"nodes": 2, "resources": resources}, budget={"deviceHours": 1})
    status = _finished(doc, 100.0).status
    assert status.device == "gpu"
    assert status.device_seconds == status.gpu_seconds == 400.0
    assert status.budget_gpu_seconds == status.budget_device_seconds == 3600.0
    assert status.grid_gpu_seconds == status.grid_device_seconds


def test_the_budget_caps_the_cpu_time_the_pods_request() -> None:
    # two trials of 900 s on 2-CPU pods spent 3,600 CPU-seconds: a 1 CPU-hour budget is
    # spent, while the same trials on 1-CPU pods leave half of it for more trials
    two_cpus = {"resources": {"requests": {"cpu": 2}}}
    spent = _finished(_spec_doc(two_cpus, budget={"deviceHours": 1}), 900.0, count=2)
    assert spent.stop_reason == "BudgetSpent" and len(spent.plan) == 2
    assert spent.status.device_seconds == spent.status.budget_device_seconds == 3600.0
    room = _finished(_spec_doc({}, budget={"deviceHours": 1}), 900.0, count=2)
    assert len(room.plan) > 2


def test_gpu_hours_is_still_accepted_and_means_device_hours() -> None:
    two_cpus = {"resources": {"requests": {"cpu": 2}}}
    old = _finished(_spec_doc(two_cpus, budget={"gpuHours": 1}), 900.0, count=2)
    new = _finished(_spec_doc(two_cpus, budget={"deviceHours": 1}), 900.0, count=2)
    assert old.status == new.status and old.plan == new.plan
    for budget in ({"gpuHours": 1, "deviceHours": 1}, {}):
        with pytest.raises(SpecError, match="deviceHours, or gpuHours"):
            parse_spec(_spec_doc(budget=budget))


def test_the_metrics_count_what_the_status_counts() -> None:
    doc = _spec_doc({"nodes": 4})
    finished = _finished(doc, 900.0)
    metrics = OperatorMetrics(CollectorRegistry())
    record = next(iter(finished.plan))
    rec = TrialRecord.succeeded(record, TrialResult(loss=1.0), 900.0)
    metrics.record_trials("ns", "s", [rec], trial_devices(parse_spec(doc)))
    metrics.observe_study("ns", "s", ScalingStudyStatus(design=finished.status))

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"namespace": "ns", "study": "s", **labels})

    assert sample("scalingstudy_trial_device_seconds_total", device="cpu") == 3600.0
    assert sample("scalingstudy_design_device_seconds", device="cpu") == 3600.0
    assert sample("scalingstudy_design_device_seconds", device="gpu") is None
    assert not sample("scalingstudy_trial_gpu_seconds_total")
    assert sample("scalingstudy_design_gpu_seconds") == finished.status.gpu_seconds == 0.0


def test_the_design_line_and_the_stop_event_name_the_device() -> None:
    one = _finished(_spec_doc({"nodes": 4}), 900.0).status
    line = design_line(one)
    assert "1 trial started" in line and "3600 CPU-seconds" in line and "GPU" not in line
    stopped = _finished(
        _spec_doc({"resources": {"requests": {"cpu": 2}}}, budget={"deviceHours": 1}),
        900.0,
        count=2,
    ).status
    (event,) = design_events(None, stopped, MODELS[-1])
    assert event.reason == "DesignStopped"
    assert "spent 3600 CPU-seconds" in event.message and "GPU" not in event.message
    assert "2 trials started" in design_line(stopped)


def test_a_gpu_studys_dry_run_prices_it_in_gpu_hours() -> None:
    doc = _spec_doc({"resources": {"limits": {"nvidia.com/gpu": 1}}}, budget={"gpuHours": 2})
    study = parse_study({"apiVersion": "scalingstudy.io/v1alpha1", "kind": "ScalingStudy",
                         "metadata": {"name": "s"}, "spec": {**doc, "seeds": 1}})  # fmt: skip
    spec = study.spec
    first = plan_trials("s", spec)[0]
    rec = TrialRecord.succeeded(first, TrialResult(loss=1.0, parameters=200), 60.0)
    text = "\n".join(describe(study, {first.name: rec}, 2))
    assert "budget: 2 GPU-hours\n" in text + "\n"
    assert "(spent so far 0.0167 GPU-hours;" in text and "CPU" not in text
    assert "x 1 seed =" in text and "seed(s)" not in text


def _cpu_study(tmp_path: Path, **spec: Any) -> Path:
    doc = {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": "cpu"},
        "spec": {
            "task": {"name": "known-curve"},
            "trainer": {"command": [sys.executable, str(HERE / "contract_trainer.py")]},
            "dataSizes": {"values": [100, 200, 400]},
            "modelSizes": {"values": [2]},
            "fit": {"bootstrap": 20},
            **spec,
        },
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_cpu_studys_plan_speaks_of_cpu_hours(tmp_path: Path) -> None:
    study = _cpu_study(tmp_path, design={"budget": {"gpuHours": 0.5}})
    out = tmp_path / "out"
    before = run_cli("plan", str(study), "--out", str(out))
    assert before.returncode == 0, before.stderr
    assert "budget: 0.5 CPU-hours (gpuHours caps CPU-hours: the trials request no GPUs)" in (
        before.stdout
    )
    assert "grid: 3 x 1 x 1 seed = 3 trials" in before.stdout
    assert run_cli("run", str(study), "--out", str(out), "--quiet").returncode == 0
    next((out / "trials").glob("*d400*.json")).unlink()  # one trial left to price
    again = run_cli("plan", str(study), "--out", str(out))
    assert again.returncode == 0, again.stderr
    cost = next(x for x in again.stdout.splitlines() if x.startswith("expected cost"))
    assert cost.startswith("expected cost of the full grid: ") and "CPU-hours" in cost
    assert "(spent so far " in cost and "GPU-hours" not in again.stdout
    assert "design grid: plans 3 trials now" in again.stdout


def test_time_admitted_before_a_preemption_is_spent_in_status_metrics_and_budget() -> None:
    """A Kueue preemption restarts the Job's start time: its record's duration is the last
    attempt only, and the Workload's accumulated admitted time is what it misses."""
    from scalingstudy.cluster.observe import KUEUE_JOB_UID, Admitted, JobState, with_earlier
    from scalingstudy.cluster.observe import admitted_before as read

    finished = [{"type": "Admitted", "status": "False", "reason": "NoReservation"},
                {"type": "Finished", "status": "True"}]  # fmt: skip
    workloads = [
        {"metadata": {"labels": {KUEUE_JOB_UID: "u1"}},
         "status": {"accumulatedPastExecutionTimeSeconds": 600}},  # v1beta2
        {"metadata": {"labels": {KUEUE_JOB_UID: "u2"}},
         "status": {"accumulatedPastExexcutionTimeSeconds": 30}},  # v1beta1's spelling
        {"metadata": {"labels": {KUEUE_JOB_UID: "u3"}}, "status": {}},  # never preempted
        {"metadata": {}, "status": {"accumulatedPastExecutionTimeSeconds": 9}},  # not a Job's
        # a Kueue that adds the last admission when the Workload finishes
        {"metadata": {"labels": {KUEUE_JOB_UID: "u4"}},
         "status": {"accumulatedPastExecutionTimeSeconds": 1000, "conditions": finished}},
    ]  # fmt: skip
    seen = read(workloads)
    assert seen == {"u1": Admitted(600.0), "u2": Admitted(30.0), "u4": Admitted(1000.0, True)}
    assert seen["u4"].before_last(900.0) == 100.0 and seen["u1"].before_last(900.0) == 600.0

    gpus = {"resources": {"limits": {"nvidia.com/gpu": 2}}}
    doc = _spec_doc(gpus, budget={"deviceHours": 1})
    spec = parse_spec(doc)
    first, second = plan_trials("s", spec)[:2]
    plain = TrialRecord.succeeded(first, TrialResult(loss=1.0, parameters=200), 900.0)
    other = TrialRecord.succeeded(second, TrialResult(loss=1.0, parameters=200), 900.0)
    jobs = [JobState(first.name, first.name, "succeeded", uid="u1"),
            JobState(second.name, second.name, "succeeded", uid="u3")]  # fmt: skip
    preempted, untouched = with_earlier([plain, other], jobs, seen)
    assert preempted.earlier_seconds == 600.0 and preempted.seconds_used == 1500.0
    assert untouched == other  # never preempted: no earlierSeconds
    status = design("s", spec, {first.name: preempted}, set(), {}).status
    assert status.device_seconds == status.gpu_seconds == 3000.0  # (900 + 600) s x 2 GPUs
    # without the Workload's time the same trial spent 1,800
    assert design("s", spec, {first.name: plain}, set(), {}).status.device_seconds == 1800.0
    # the others are priced from its last attempt (no uninterrupted run to price from),
    # as if it had not been preempted: the grid estimate differs by the 1,200 spent before
    unpreempted = design("s", spec, {first.name: plain}, set(), {}).status
    assert status.grid_device_seconds is not None and unpreempted.grid_device_seconds
    assert status.grid_device_seconds - unpreempted.grid_device_seconds == 1200.0
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.record_trials("ns", "s", [preempted], trial_devices(spec))
    labels = {"namespace": "ns", "study": "s"}
    used = metrics.registry.get_sample_value("scalingstudy_trial_gpu_seconds_total", labels)
    assert used == 3000.0
    assert "earlierSeconds" in preempted.to_json() and "earlier_seconds" not in plain.csv_row()


def test_a_run_deleted_while_it_ran_is_spent_once_and_leaves_status_small() -> None:
    """A spec edit drops a running trial: the pass that deletes its Job writes the run
    into status.design.cancelled (by Job uid) and counts it at once; once its Job is gone
    the entry folds into cancelledSeconds."""
    import datetime as dt

    from scalingstudy.cluster.observe import Admitted, JobState
    from scalingstudy.cluster.spend import cancelled_runs, open_ledger

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    now = start + dt.timedelta(seconds=300)
    jobs = [
        JobState("s-a", "s-a", "active", started=start, uid="u-a"),
        JobState("s-b", "s-b", "queued", uid="u-b"),  # never admitted: nothing spent
        JobState("s-p", "s-p", "queued", uid="u-p"),  # preempted, then dropped while queued
        JobState("s-c", "s-c", "active", started=start, uid="u-c"),  # kept: not deleted
    ]
    admitted = {"u-p": Admitted(120.0), "u-a": Admitted(50.0)}
    runs = cancelled_runs({"s-a", "s-b", "s-p"}, jobs, (), now, admitted)
    assert [(r.trial, r.job_uid, r.seconds) for r in runs] == [
        ("s-a", "u-a", 350.0), ("s-p", "u-p", 120.0)]  # fmt: skip
    assert cancelled_runs({"s-a"}, jobs, {"u-a"}, now, {}) == ()  # counted once, by uid

    doc = _spec_doc({"nodes": 2, "resources": {"limits": {"nvidia.com/gpu": 1}}})
    spec = parse_spec(doc)
    grid = plan_trials("s", spec)[:1]
    result = TrialResult(loss=1.0, parameters=100 * grid[0].model_size)
    records = {grid[0].name: TrialRecord.succeeded(grid[0], result, 100.0)}
    plain = design("s", spec, records, set(), {}).status
    kept = design("s", spec, records, set(), {}, runs).status
    assert kept.device_seconds == plain.device_seconds + 940.0  # 470 s x 2 GPUs
    assert kept.budget_device_seconds is None and kept.cancelled == list(runs)
    # the next pass: s-a's Job is gone, s-p's still listed: s-a folds, s-p stays by uid
    ledger, folded = open_ledger(kept, [jobs[2], jobs[3]])
    assert [c.job_uid for c in ledger] == ["u-p"] and folded == 350.0
    later = design("s", spec, records, set(), {}, ledger, folded).status
    assert later.device_seconds == kept.device_seconds and later.cancelled_seconds == 350.0
    assert ScalingStudyStatus(design=later).to_json()["design"]["cancelled"] == [
        {"trial": "s-p", "jobUid": "u-p", "seconds": 120.0}]  # fmt: skip


def test_the_budget_counts_cancelled_runs() -> None:
    """A run deleted before it ended spent the budget as a finished trial does."""
    from scalingstudy.status import CancelledRun

    doc = _spec_doc({}, budget={"deviceHours": 1})
    roomy = _finished(doc, 900.0, count=2)  # 1,800 of 3,600 CPU-seconds spent
    assert len(roomy.plan) > 2  # room for more trials
    spec = parse_spec(doc)
    grid = plan_trials("s", spec)[:2]
    records = {t.name: TrialRecord.succeeded(t, _result(t.model_size), 900.0) for t in grid}
    lost = [CancelledRun(trial="s-gone", job_uid="u", seconds=1500.0)]
    spent = design("s", spec, records, set(), {}, lost)
    assert spent.stop_reason == "BudgetSpent" and len(spent.plan) == 2
    assert spent.status.device_seconds == 3300.0


def test_the_cancelled_ledger_is_bounded_and_loses_no_second() -> None:
    from scalingstudy.cluster.spend import LEDGER_MAX, bounded_ledger
    from scalingstudy.status import CancelledRun

    runs = [CancelledRun(trial=f"t{i}", job_uid=f"u{i}", seconds=1.0) for i in range(250)]
    kept, folded = bounded_ledger(runs, 10.0)
    assert len(kept) == LEDGER_MAX and kept[-1].job_uid == "u249"  # the newest kept
    assert folded + sum(c.seconds for c in kept) == 260.0
    assert bounded_ledger(runs[:3], 0.0) == (runs[:3], 0.0)


def test_spend_counts_trials_an_edit_dropped_and_pruned_runs_trained_again() -> None:
    """Spend as the trials used it: a finished trial of a data size an edit removed still
    counts (as the metrics, which counted it when it ended), and so does the pruned run of
    a trial whose decision lapsed and which is trained again (its record leaves status)."""
    from scalingstudy.planning.scheduling import lapsed_runs
    from scalingstudy.status import CancelledRun

    doc = _spec_doc({})
    spec = parse_spec(doc)
    kept_trial = plan_trials("s", spec)[0]
    kept = TrialRecord.succeeded(kept_trial, _result(kept_trial.model_size), 100.0)
    dropped = TrialRecord.succeeded(
        Trial(800, 2, 0, name="s-d800-m2-s0"), _result(2), 1000.0)  # fmt: skip
    both = design("s", spec, {kept.trial: kept, dropped.trial: dropped}, set(), {}).status
    assert both.device_seconds == 1100.0
    assert both.grid_device_seconds is not None and both.grid_device_seconds >= 1100.0
    pruned = kept.model_copy(update={"status": "Pruned", "pruned_at_step": 40,
                                     "duration_seconds": 30.0, "earlier_seconds": 5.0})  # fmt: skip
    key = f"lapsed:{kept.trial}:40"
    assert lapsed_runs([pruned]) == [CancelledRun(trial=kept.trial, job_uid=key, seconds=35.0)]


def test_a_job_already_going_and_a_relapsed_prune_with_its_job_listed_count_once() -> None:
    """Review: a Job that is being deleted was deleted, and counted, by an earlier pass
    (its entry may have folded since); a lapsed pruned run whose Job is still listed is
    kept by that Job's uid, so the next pass keeps the Job out of pruning and collection."""
    import datetime as dt

    from scalingstudy.cluster.observe import JobState
    from scalingstudy.cluster.spend import cancelled_runs, open_ledger
    from scalingstudy.planning.scheduling import lapsed_runs
    from scalingstudy.status import DesignStatus

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    going = JobState("s-a", "s-a", "active", started=start, uid="u-a", deleting=True)
    assert cancelled_runs({"s-a"}, [going], (), start + dt.timedelta(seconds=60), {}) == ()
    spec = parse_spec(_spec_doc({}))
    trial = plan_trials("s", spec)[0]
    pruned = TrialRecord.succeeded(trial, _result(trial.model_size), 30.0).model_copy(
        update={"status": "Pruned", "pruned_at_step": 40})  # fmt: skip
    run = lapsed_runs([pruned], {trial.name: "u-job"})[0]
    assert run.job_uid == "u-job" and lapsed_runs([pruned])[0].job_uid.startswith("lapsed:")
    listed = [JobState(trial.name, trial.name, "active", started=start, uid="u-job")]
    design_status = DesignStatus(strategy="grid", trials_started=1, grid_trials=1,
                                 trials_skipped=0, gpu_seconds=0.0, cancelled=[run])  # fmt: skip
    assert open_ledger(design_status, listed) == ([run], 0.0)  # kept, by uid, while listed
