"""The operator's pure parts of issue 38 on a cluster: which pod's log is a trial's
curve, curves.csv's rows, and the pruning pass (`cluster/pruning_pass.py`)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from typing import Any

import yaml

from scalingstudy import curve_rows
from scalingstudy.cluster import pruning_pass as pp
from scalingstudy.cluster.manifests import COMPLETION_INDEX, LABEL_TRIAL
from scalingstudy.cluster.observe import JobState
from scalingstudy.cluster.pod_logs import combined, pod_zero
from scalingstudy.cluster.pruner import pruned_event
from scalingstudy.cluster.reconcile import decide
from scalingstudy.cluster.status_builder import build_status
from scalingstudy.contract import TrialResult
from scalingstudy.planning.plan import Plan, Trial
from scalingstudy.pruning import Prune
from scalingstudy.records import TrialRecord
from scalingstudy.render.curves_html import TrialLine
from scalingstudy.render.output import write_curves_csv
from scalingstudy.spec import parse_spec
from scalingstudy.status import ScalingStudyStatus
from scalingstudy_sdk.curve import Curve, CurvePoint
from tests.harness import cluster as harness


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
    lines = [TrialLine(t, c) for t, c in [(trials[0], curve)]]
    assert curve_rows.rows(trials, {"t1": curve}) == curve_rows.rows([trials[0]], {"t1": curve})
    path = write_curves_csv(tmp_path / curve_rows.CURVES_FILE, lines)
    assert path is not None
    with path.open() as f:
        read = list(csv.DictReader(f))
    assert tuple(read[0]) == curve_rows.CURVE_COLUMNS
    assert [r["step"] for r in read] == ["10", "20"]
    assert read[0] == {"trial": "t1", "data_size": "100", "model_size": "4", "seed": "0",
                       "learning_rate": "0.01", "status": "Running", "step": "10",
                       "samples_seen": "640", "validation_loss": "2.5", "train_loss": "2.7",
                       "seconds": "1.5"}  # fmt: skip
    assert read[1]["validation_loss"] == "" and read[1]["samples_seen"] == ""


# -- the pruning pass ------------------------------------------------------------------
def _job(trial: str, *, rate: float, pruned: str | None = None, phase: str = "active",
         deleting: bool = False) -> JobState:  # fmt: skip
    return JobState(trial=trial, name=trial, phase=phase, coordinates=(100, 4, 0),  # type: ignore[arg-type]
                    learning_rate=rate, uid=f"uid-{trial}", pruned=pruned,
                    deleting=deleting)  # fmt: skip


def _curve(*losses: float, budget: int = 100) -> Curve:
    return Curve(tuple(CurvePoint(step=10 * (i + 1), validation_loss=v)
                       for i, v in enumerate(losses)), budget)  # fmt: skip


def test_a_decision_on_a_job_is_recorded_once_and_its_job_deleted_then() -> None:
    """After a restart between annotating and writing status, the next pass records the
    trial from its Job alone (curve included); once recorded, the Job is deleted, and
    the trial is never judged again."""
    curve = _curve(3.0, 2.9, 2.8)
    mark = pp.mark_of(Prune("bad", 30, 2.8, "cannot win"), curve, 12.5)
    jobs = [_job("bad", rate=1.0, pruned=mark.to_annotation()), _job("good", rate=0.1)]
    [record] = pp.to_record(jobs, {})
    assert (record.trial, record.status, record.pruned_at_step) == ("bad", "Pruned", 30)
    assert record.best_loss == 2.8 and record.message == "cannot win"
    assert record.curve == [[10, 3.0], [20, 2.9], [30, 2.8]]
    assert record.duration_seconds == 12.5 and record.loss is None
    assert pp.to_delete(jobs, {}) == []  # not before status holds it
    assert pp.to_record(jobs, {"bad": record}) == []  # never twice
    assert pp.to_delete(jobs, {"bad": record}) == ["bad"]
    assert [j.trial for j in pp.running(jobs, {})] == ["good"]  # never judged again
    deleting = [_job("bad", rate=1.0, pruned=mark.to_annotation(), deleting=True)]
    assert pp.to_delete(deleting, {"bad": record}) == []


def test_an_unreadable_decision_still_records_the_trial_pruned() -> None:
    [record] = pp.to_record([_job("bad", rate=1.0, pruned="{not json")], {})
    assert record.status == "Pruned" and "could not be read" in (record.message or "")


def test_only_running_and_succeeded_trials_compete() -> None:
    ok = TrialRecord.succeeded(Trial(100, 4, 0, name="ok", learning_rate=0.1),
                               TrialResult(loss=2.0), 5.0)  # fmt: skip
    failed = TrialRecord.failed(Trial(100, 4, 0, name="bad", learning_rate=1.0), "X", "", 1.0)
    out = pp.competitors([_job("run", rate=0.3)], {"ok": ok, "bad": failed},
                         {"run": _curve(2.5), "ok": _curve(2.1)})  # fmt: skip
    assert [(c.trial, c.running, c.final) for c in out] == [("run", True, None),
                                                            ("ok", False, 2.0)]  # fmt: skip
    assert out[1].curve == _curve(2.1)


def test_pushed_progress_that_the_log_contradicts_is_forged() -> None:
    curves = {"t1": _curve(3.0, 2.0), "t2": _curve(3.0, 2.0), "t3": _curve(3.0)}
    pushed = {
        "t1": {"steps": 20.0, "validation_loss": 9.0},  # the log says 2.0 at step 20
        "t2": {"steps": 20.0, "validation_loss": 2.0},  # agrees
        "t3": {"steps": 50.0, "validation_loss": 9.0},  # a step the log lacks: unknown
        "t4": {"steps": 10.0, "validation_loss": 9.0},  # no log read
    }
    assert pp.forged(pushed, curves) == [pp.Forged("t1", 20, 2.0, 9.0)]


def test_a_pruned_trial_is_finished_not_failed_and_not_started_again() -> None:
    spec = parse_spec({"task": {"name": "teacher-student"},
                       "dataSizes": {"values": [100, 200, 400]}, "modelSizes": {"values": [4]},
                       "learningRates": {"values": [0.1, 1.0]}, "maxFailedTrials": 0})  # fmt: skip
    plan = Plan.of("s", spec)
    good, bad = list(plan)[:2]
    record = TrialRecord.pruned(bad, 30, "cannot win", _curve(3.0, 2.9), 5.0)
    jobs = [_job(good.name, rate=0.1), _job(bad.name, rate=1.0, pruned="{}")]
    p = decide(plan, jobs, {}, [record], parallelism=2, max_failed=0, fit=None)
    assert bad.name not in {t.name for t in p.create} and len(p.create) == 1
    assert p.failed_reason is None and not p.finished
    assert (p.counts.failed, p.counts.pending, p.counts.running, p.counts.pruned) == (0, 4, 1, 1)
    status = build_status(p, 1, ScalingStudyStatus(), None, None, "2026-01-01T00:00:00Z")
    assert status.progress == "1/6" and status.phase == "Running"


def test_a_pruned_trial_whose_pod_is_gone_keeps_its_curve_in_curves_csv() -> None:
    trial = Trial(100, 4, 0, name="bad", learning_rate=1.0)
    record = TrialRecord.pruned(trial, 30, "cannot win", _curve(3.0, 2.9, 2.8), 5.0)
    kept = curve_rows.compact_curve(record)
    assert kept is not None
    table = curve_rows.rows([curve_rows.of_record(record)], {"bad": kept})
    assert [(r["status"], r["step"], r["validation_loss"]) for r in table] == [
        ("Pruned", 10, 3.0), ("Pruned", 20, 2.9), ("Pruned", 30, 2.8)]  # fmt: skip


def test_the_pruned_event_names_every_trial_before_its_details() -> None:
    records = [TrialRecord.pruned(Trial(100, 4, 0, name=f"t{i}", learning_rate=1.0), 30,
                                  "x" * 400, _curve(3.0), 5.0) for i in range(5)]  # fmt: skip
    event = pruned_event(records)
    assert event.reason == "TrialsPruned"
    assert event.message[:1024].startswith("pruned 5 trial(s): t0, t1, t2, t3, t4.")


def test_the_built_in_trainers_best_so_far_bounds_its_final_as_locally() -> None:
    """A rival with too few evaluations to forecast still bounds the slot with its best
    so far when it is the built-in trainer (it reports its lowest evaluation), as the
    local runner judges; a custom trainer's does not."""
    doc = {"task": {"name": "teacher-student"}, "dataSizes": {"values": [100, 200, 400]},
           "modelSizes": {"values": [4]}, "learningRates": {"values": [0.1, 1.0]},
           "design": {"pruning": {"enabled": True}}}  # fmt: skip
    builtin = parse_spec(doc)
    custom = parse_spec({**doc, "trainer": {"command": ["train"]}})
    live = [_job("bad", rate=1.0), _job("new", rate=0.1)]
    curves = {"bad": _curve(*[3.0 - 0.001 * i for i in range(12)], budget=200),
              "new": _curve(1.0, 0.9, budget=200)}  # fmt: skip
    assert [p.trial for p in pp.judge(builtin, live, {}, curves)] == ["bad"]
    assert pp.judge(custom, live, {}, curves) == []


def _rules(*values: str) -> list[dict[str, Any]]:
    chart = Path(__file__).resolve().parents[1] / "charts" / "scalingstudy"
    out = subprocess.run([str(harness.testbin() / "helm"), "template", "t", str(chart),
                          "--kube-version=1.35.0", *values],
                         capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    roles = [d for d in docs if d["kind"] in ("ClusterRole", "Role")
             and not d["metadata"]["name"].endswith("-leader")]  # fmt: skip
    assert roles
    return [rule for role in roles for rule in role["rules"]]


def test_the_chart_lets_the_operator_read_pod_logs_and_annotate_jobs_only() -> None:
    """What pruning needs, and no more: pods/log get (the curves), Jobs patch (the
    decision written on the Job); still no pod writes and no Job updates."""
    for values in ([], ["--set", "watchNamespaces={a}"]):
        rules = _rules(*values)
        verbs = {res: set(r["verbs"]) for r in rules for res in r["resources"]}
        assert verbs["pods/log"] == {"get"}
        assert verbs["jobs"] == {"list", "watch", "create", "delete", "patch"}
        assert verbs["pods"] == {"list"}
