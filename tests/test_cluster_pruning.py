"""The operator's pure parts of issue 38 on a cluster: which pod's log is a trial's
curve, curves.csv's rows, and the pruning pass (`cluster/pruning_pass.py`)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scalingstudy import curve_rows
from scalingstudy.cluster import forgery
from scalingstudy.cluster import pruning_pass as pp
from scalingstudy.cluster.collect import CollectPolicy, collect
from scalingstudy.cluster.manifests import (
    COMPLETION_INDEX,
    LABEL_DATA_SIZE,
    LABEL_MODEL_SIZE,
    LABEL_SEED,
    LABEL_TRIAL,
)
from scalingstudy.cluster.observe import PRUNED_ANNOTATION, JobState, job_state
from scalingstudy.cluster.pod_logs import (
    ATTEMPT_BYTES_MIN,
    ATTEMPTS_MAX,
    LOG_BYTES,
    attempt_bytes,
    combined,
    curve_of,
    pods_zero,
)
from scalingstudy.cluster.pruner import pruned_event
from scalingstudy.cluster.reconcile import decide, to_collect
from scalingstudy.cluster.status_builder import build_status
from scalingstudy.contract import TrialResult
from scalingstudy.planning.plan import Plan, Trial, trial_name
from scalingstudy.pruning import Prune
from scalingstudy.records import TrialRecord
from scalingstudy.render.curves_html import TrialLine
from scalingstudy.render.output import write_curves_csv
from scalingstudy.spec import parse_spec
from scalingstudy.status import ScalingStudyStatus
from scalingstudy_sdk.contract import CURVE_GAUGE
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


def _names(pods: list[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_the_curve_is_every_pod_zero_of_the_trials_own_job_oldest_first() -> None:
    """D: a retried trial's curve is every attempt's log, not only the latest one's."""
    pods = [
        _pod("retry", "2026-01-01T00:05:00Z", index="0"),
        _pod("first-try", "2026-01-01T00:00:00Z", index="0"),
        _pod("rank-1", "2026-01-01T00:06:00Z", index="1"),
        # A pod with the trial's labels that another Job (or anyone) made, later still:
        _pod("copy", "2026-01-01T00:07:00Z", uid="other-uid", index="0", job="forger"),
    ]
    assert _names(pods_zero(pods, job_uid="job-uid")) == ["first-try", "retry"]
    assert _names(pods_zero(pods, job_name="t1")) == ["first-try", "retry"]
    assert pods_zero(pods, job_uid="gone-uid") == []


def test_a_trial_retried_many_times_reads_its_first_and_latest_attempts_bounded() -> None:
    pods = [_pod(f"try-{i:02d}", f"2026-01-01T00:{i:02d}:00Z") for i in range(20)]
    chosen = _names(pods_zero(pods, job_uid="job-uid", limit=4))
    assert chosen == ["try-00", "try-17", "try-18", "try-19"]
    assert len(pods_zero(pods, job_uid="job-uid")) == ATTEMPTS_MAX
    # The attempts share the start read: the total stays bounded, each gets a floor.
    assert attempt_bytes(1) == LOG_BYTES
    assert attempt_bytes(ATTEMPTS_MAX) * ATTEMPTS_MAX <= max(
        LOG_BYTES, ATTEMPTS_MAX * ATTEMPT_BYTES_MIN
    )


def _line(**event: Any) -> str:
    return json.dumps(event)


def test_a_restarted_curve_keeps_its_first_part() -> None:
    """D: the attempts' lines, oldest first, into one reader: the first attempt's early
    evaluations stay, the resumed attempt's evaluations win where both evaluated."""
    first = [_line(event="start", step_budget=100, ts=0.0),
             *[_line(event="eval", step=s, validation_loss=3.0 - s / 100, ts=float(s))
               for s in (10, 20, 30, 40)]]  # fmt: skip
    second = [_line(event="start", step_budget=100, ts=100.0),
              *[_line(event="eval", step=s, validation_loss=2.0 - s / 100, ts=100.0 + s)
                for s in (30, 40, 50)]]  # fmt: skip
    curve = curve_of([first, second])
    assert [p.step for p in curve.points] == [10, 20, 30, 40, 50]
    assert [p.validation_loss for p in curve.points][:2] == [2.9, 2.8]
    assert curve.points[2].validation_loss == 1.7 and curve.step_budget == 100


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


def test_failed_and_pruned_trials_compete_with_no_final_as_locally() -> None:
    """A failed (or pruned) trial bounds no one; it is still its arm's seed, so an arm
    with one is not judged (the runner's competitors hold it the same way)."""
    ok = TrialRecord.succeeded(Trial(100, 4, 0, name="ok", learning_rate=0.1),
                               TrialResult(loss=2.0), 5.0)  # fmt: skip
    failed = TrialRecord.failed(Trial(100, 4, 0, name="bad", learning_rate=1.0), "X", "", 1.0)
    out = pp.competitors([_job("run", rate=0.3)], {"ok": ok, "bad": failed},
                         {"run": _curve(2.5), "ok": _curve(2.1), "bad": _curve(9.0)})  # fmt: skip
    assert [(c.trial, c.running, c.final) for c in out] == [
        ("run", True, None), ("ok", False, 2.0), ("bad", False, None)]  # fmt: skip
    assert out[1].curve == _curve(2.1) and out[2].curve == Curve()


def test_pushed_progress_that_the_log_contradicts_is_forged() -> None:
    curves = {"t1": _curve(3.0, 2.0), "t2": _curve(3.0, 2.0), "t3": _curve(3.0)}
    pushed = {
        "t1": {"steps": 20.0, "validation_loss": 9.0},  # the log says 2.0 at step 20
        "t2": {"steps": 20.0, "validation_loss": 2.0},  # agrees
        "t3": {"steps": 50.0, "validation_loss": 9.0},  # a step the log lacks: unknown
        "t4": {"steps": 10.0, "validation_loss": 9.0},  # no log read
    }
    assert forgery.forged(pushed, curves) == [forgery.Forged("t1", 20, 2.0, 9.0)]


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
    bad, new = trial_name("s", 100, 4, 0, 1.0), trial_name("s", 100, 4, 0, 0.1)
    live = [_job(bad, rate=1.0), _job(new, rate=0.1)]
    curves = {bad: _curve(*[3.0 - 0.001 * i for i in range(12)], budget=200),
              new: _curve(1.0, 0.9, budget=200)}  # fmt: skip
    assert [p.trial for p in pp.judge("s", builtin, live, {}, curves)] == [bad]
    assert pp.judge("s", custom, live, {}, curves) == []


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
        assert verbs["workloads"] == {"list"}  # Kueue's: time admitted before a preemption


# -- A: a trial that finished by itself is collected, never recorded Pruned ------------
def _job_obj(trial: str, *, complete: bool = False, succeeded: int = 0,
             annotated: bool = True) -> dict[str, Any]:  # fmt: skip
    """A trial's Job as the API server answers it (the annotation's PATCH answers so)."""
    labels = {LABEL_TRIAL: trial, LABEL_DATA_SIZE: "100", LABEL_MODEL_SIZE: "4",
              LABEL_SEED: "0"}  # fmt: skip
    mark = pp.PruneMark(30, "cannot win", 5.0, ((10.0, 3.0), (30.0, 2.8)), "good")
    annotations = {PRUNED_ANNOTATION: mark.to_annotation()} if annotated else {}
    status: dict[str, Any] = {"startTime": "2026-01-01T00:00:00Z", "succeeded": succeeded}
    if complete:
        status["conditions"] = [{"type": "Complete", "status": "True"}]
        status["completionTime"] = "2026-01-01T00:01:00Z"
    else:
        status["active"] = 1
    return {"metadata": {"name": trial, "uid": f"uid-{trial}", "labels": labels,
                         "annotations": annotations}, "spec": {}, "status": status}  # fmt: skip


def _ended_pod(trial: str, exit_code: int, message: str = "") -> dict[str, Any]:
    pod = _pod(f"{trial}-pod", "2026-01-01T00:00:00Z", uid=f"uid-{trial}", job=trial)
    pod["metadata"]["labels"] = {LABEL_TRIAL: trial}
    terminated = {"exitCode": exit_code, "message": message,
                  "finishedAt": "2026-01-01T00:01:00Z"}  # fmt: skip
    pod["status"] = {"containerStatuses": [{"name": "trainer",
                                            "state": {"terminated": terminated}}]}  # fmt: skip
    return pod


def test_a_job_that_finished_by_itself_is_not_pruned_by_a_late_decision() -> None:
    """A: the Job the PATCH answers, or the pass's pods, say the trial finished: no
    Pruned record, not now (`completed`) nor after a restart (`to_record`)."""
    running = _job_obj("t", annotated=False)
    assert not pp.completed(running, [])
    assert not pp.completed(running, [_ended_pod("t", 1)])  # failed: the decision stands
    assert pp.completed(_job_obj("t", complete=True), [])
    assert pp.completed(_job_obj("t", succeeded=1), [])
    assert pp.completed(running, [_ended_pod("t", 0)])  # pod 0 done, the Job not yet
    # The next pass (a restart, say): the annotated Job still active, its pod 0 exited 0.
    active = job_state(_job_obj("t"))
    pods = {"t": [_ended_pod("t", 0)]}
    assert pp.unsettled([active], {})
    assert pp.ended_by_itself([active], {}, pods) == {"t"}
    assert pp.to_record([active], {}, pp.ended_by_itself([active], {}, pods)) == []
    assert [r.trial for r in pp.to_record([active], {})] == ["t"]  # without the pods: Pruned
    assert pp.ended_by_itself([active], {}, {"t": [_ended_pod("t", 1)]}) == set()


def test_an_annotated_job_that_completed_is_collected_and_its_result_wins() -> None:
    done = job_state(_job_obj("t", complete=True))
    assert done.pruned is not None and done.phase == "succeeded"
    assert pp.to_record([done], {}) == []
    assert pp.to_delete([done], {}) == []
    assert to_collect([done], {}) == [done]
    failed = dataclasses.replace(job_state(_job_obj("t")), phase="failed")
    assert to_collect([failed], {}) == []  # the decision's: recorded Pruned, never Failed
    policy = CollectPolicy("validation_loss", wait_for_scrape=False, grace_seconds=0.0)
    pods = {"t": [_ended_pod("t", 0, json.dumps({"validation_loss": 1.25}))]}
    found = collect([done], pods, {}, dt.datetime.now(dt.UTC), policy)
    [record] = found.records
    assert (record.status, record.loss) == ("Succeeded", 1.25)


# -- B: only running trials' logs are read each pass; succeeded ones' once -------------
def _ok(trial: str, rate: float = 0.1) -> TrialRecord:
    return TrialRecord.succeeded(Trial(100, 4, 0, name=trial, learning_rate=rate),
                                 TrialResult(loss=2.0), 5.0)  # fmt: skip


def test_only_succeeded_trials_logs_are_read_and_each_once() -> None:
    failed = TrialRecord.failed(Trial(100, 4, 0, name="f", learning_rate=1.0), "X", "", 1.0)
    pruned = TrialRecord.pruned(Trial(100, 4, 0, name="p", learning_rate=1.0), 30, "x",
                                _curve(3.0), 5.0)  # fmt: skip
    recorded = {"ok": _ok("ok"), "old": _ok("old"), "f": failed, "p": pruned}
    jobs = [_job(t, rate=0.1, phase=ph) for t, ph in
            [("run", "active"), ("ok", "succeeded"), ("old", "succeeded"), ("f", "failed"),
             ("p", "active")]]  # fmt: skip
    assert [j.trial for j in pp.to_read_once(jobs, recorded, {"uid-old"})] == ["ok"]
    cache = {f"uid-{t}": (t, _curve(2.5)) for t in ("gone", "old", "ok", "f")}
    assert list(pp.kept_curves(cache, recorded)) == ["uid-old", "uid-ok"]
    assert list(pp.kept_curves(cache, recorded, limit=1)) == ["uid-ok"]  # bounded


def test_a_succeeded_trial_without_a_read_curve_competes_with_its_record() -> None:
    out = pp.competitors([], {"ok": _ok("ok")}, {"ok": Curve()})
    assert [(c.trial, c.final, c.curve) for c in out] == [("ok", 2.0, Curve())]


# -- C: a forged flood is one Event a pass, every forgery counted, memory bounded ------
def test_a_flood_of_forged_pushes_writes_one_event_and_forgets_ended_trials() -> None:
    found = [forgery.Forged(f"t{i:02d}", 20, 2.0, 9.0) for i in range(30)]
    fresh, seen = forgery.unseen(found, {}, {f.trial for f in found})
    assert len(fresh) == 30
    event = forgery.forged_event(fresh)
    assert event is not None and event.reason == "ResultMismatch" and event.type == "Warning"
    assert event.message.startswith("30 pushed evaluation(s)")
    assert "t00 at step 20" in event.message and "t04" in event.message
    assert "t05" not in event.message and "and 25 more" in event.message
    assert forgery.forged_event([]) is None
    again, seen = forgery.unseen(found, seen, {f.trial for f in found})
    assert again == []  # the same samples read again: not counted twice
    moved, seen = forgery.unseen([forgery.Forged("t00", 30, 2.0, 9.0)], seen, {"t00"})
    assert [f.step for f in moved] == [30] and seen == {"t00": {20, 30}}  # ended: forgotten
    # A forged curve point at a step counted already (the same evaluation) is not again.
    assert forgery.unseen([forgery.Forged("t00", 20, 2.0, 9.0)], seen, {"t00"})[0] == []
    # A flood of forged steps: every one counted, the memory bounded (the highest kept).
    flood = [forgery.Forged("t00", s, 2.0, 9.0) for s in range(10_000)]
    fresh, seen = forgery.unseen(flood, seen, {"t00"})
    assert len(fresh) == 10_000 - 2 and len(seen["t00"]) == forgery.SEEN_MAX
    assert max(seen["t00"]) == 9_999


def test_a_pushed_curve_point_the_log_contradicts_is_forged() -> None:
    """The curve the progress push carries (the step panel's) is checked as the latest
    evaluation is: at each step the log has; other metrics and bad labels are skipped."""

    def sample(trial: str, step: str, value: str, name: str = CURVE_GAUGE) -> dict[str, Any]:
        return {"metric": {"__name__": name, "trial": trial, "step": step},
                "value": [0, value]}  # fmt: skip

    answer = {"status": "success", "data": {"resultType": "vector", "result": [
        sample("t1", "10", "3.0"), sample("t1", "20", "9.0"), sample("t1", "70", "9.0"),
        sample("t1", "x", "9.0"), sample("t2", "10", "3.0"),
        sample("t1", "10", "1.0", name="scalingstudy_trial_validation_loss"),
    ]}}  # fmt: skip
    answer["data"]["result"] += [sample("t1", "²", "9.0"), sample("t1", "9" * 5000, "9.0")]
    points = forgery.pushed_curves(answer)  # a step that is no ASCII number, or too long: skipped
    assert points == {"t1": {10: 3.0, 20: 9.0, 70: 9.0}, "t2": {10: 3.0}}
    curves = {"t1": _curve(3.0, 2.0), "t2": _curve(3.0)}
    latest = {
        "t1": {"steps": 20.0, "validation_loss": 2.0},
        "t2": {"steps": 10.0, "validation_loss": 3.0},
    }
    assert forgery.forged_points(points, latest, curves) == [forgery.Forged("t1", 20, 2.0, 9.0)]
    assert forgery.pushed_curves({"data": {"result": "no vector"}}) == {}
    # A latest the log contradicts (counted by `forged`), or does not have yet: the push may
    # be an earlier attempt's, whose points the retry evaluated again: its curve is not read.
    for now in ({"steps": 20.0, "validation_loss": 9.0}, {"steps": 50.0, "validation_loss": 1.0}):
        assert forgery.forged_points(points, {"t1": now}, curves) == []
    # A latest pushed without its loss (its step is the log's): the points are compared.
    assert forgery.forged_points(points, {"t1": {"steps": 20.0}}, curves) == [
        forgery.Forged("t1", 20, 2.0, 9.0)]  # fmt: skip
    # A flood of pushed points costs at most CURVE_COMPARED comparisons a trial.
    flood = {"t1": {10 * (i + 1): 9.0 for i in range(100_000)}}
    now = {"t1": {"steps": 20.0, "validation_loss": 1.0}}
    found = forgery.forged_points(flood, now, {"t1": _curve(*[1.0] * 200)})
    assert len(found) == forgery.CURVE_COMPARED


def test_pruning_without_prometheus_or_while_it_is_down_counts_nothing_and_judges() -> None:
    """No --prometheus-url, or one that does not answer: no pushed progress is known (and
    nothing raises: the pass goes on to judge the trials from their logs)."""
    from scalingstudy.cluster.manifests import StudyRef
    from scalingstudy.cluster.metrics import OperatorMetrics
    from scalingstudy.cluster.prometheus import Prometheus
    from scalingstudy.cluster.pruner import Pruner

    ref = StudyRef("s", "ns", "uid")
    for url in ("", "http://127.0.0.1:9"):
        pruner = Pruner(None, Prometheus(url, timeout=0.5), OperatorMetrics())  # type: ignore[arg-type]
        assert pruner._check_progress(ref, {"t1": _curve(3.0, 2.0)}, {"t1"}) == []


# -- E: a pruned trial whose rival failed, or is no longer planned, is trained again ---
def _sweep(rates: list[float]) -> Plan:
    spec = parse_spec({"task": {"name": "teacher-student"},
                       "dataSizes": {"values": [100, 200, 400]}, "modelSizes": {"values": [4]},
                       "learningRates": {"values": rates}, "maxFailedTrials": 5})  # fmt: skip
    return Plan.of("s", spec)


def _rate(plan: Plan, rate: float) -> Trial:
    return next(t for t in plan if t.learning_rate == rate and t.data_size == 100)


def test_a_pruned_trial_whose_rival_failed_is_trained_again() -> None:
    plan = _sweep([0.1, 1.0])
    good, bad = _rate(plan, 0.1), _rate(plan, 1.0)
    pruned = TrialRecord.pruned(bad, 30, "cannot win", _curve(3.0), 5.0, against=good.name)
    failed = TrialRecord.failed(good, "OOMKilled", "", 9.0)
    p = decide(plan, [], {bad.name: pruned}, [failed], parallelism=9, max_failed=5, fit=None)
    assert bad.name not in p.records and bad.name in {t.name for t in p.create}
    assert p.counts.pruned == 0 and p.counts.failed == 1 and not p.finished
    # While the rival stands, the decision does:
    ok = TrialRecord.succeeded(good, TrialResult(loss=2.0), 9.0)
    p = decide(plan, [], {bad.name: pruned}, [ok], parallelism=9, max_failed=5, fit=None)
    assert p.records[bad.name].status == "Pruned" and bad.name not in {t.name for t in p.create}


def test_a_pruned_trial_whose_rival_a_spec_edit_removed_waits_for_its_old_job() -> None:
    before = _sweep([0.1, 1.0])
    good, bad = _rate(before, 0.1), _rate(before, 1.0)
    plan = _sweep([1.0, 3.0])  # 0.1 is no longer planned
    pruned = TrialRecord.pruned(bad, 30, "cannot win", _curve(3.0), 5.0, against=good.name)
    mark = pp.PruneMark(30, "cannot win", 5.0, ((10.0, 3.0),), good.name).to_annotation()
    old = JobState(trial=bad.name, name=bad.name, phase="failed", coordinates=(100, 4, 0),
                   learning_rate=1.0, uid="old", pruned=mark, deleting=True)  # fmt: skip
    p = decide(plan, [old], {bad.name: pruned}, [], parallelism=9, max_failed=5, fit=None)
    assert bad.name not in p.records
    assert bad.name not in {t.name for t in p.create}  # its old Job is still going: wait
    assert pp.to_record([old], {}) == [] and to_collect([old], {}) == []  # not again
    p = decide(plan, [], {bad.name: pruned}, [], parallelism=9, max_failed=5, fit=None)
    assert bad.name in {t.name for t in p.create}  # gone: made again


def test_a_decision_carries_its_rival_through_the_jobs_annotation() -> None:
    mark = pp.PruneMark(30, "cannot win", 5.0, ((10.0, 3.0),), "rival")
    again = pp.PruneMark.from_annotation(mark.to_annotation())
    assert again == mark
    [record] = pp.to_record([_job("bad", rate=1.0, pruned=mark.to_annotation())], {})
    assert record.pruned_against == "rival"
    assert pp.mark_of(Prune("bad", 30, 2.8, "x"), _curve(3.0), None).against is None
    rival = pp.mark_of(Prune("bad", 30, 2.8, "x", against="rival"), _curve(3.0), None)
    judged = pp.pruned_record(_job("bad", rate=1.0), rival)
    assert judged is not None and judged.pruned_against == "rival"


def test_a_pod_is_a_trials_only_when_its_labels_say_so_in_full() -> None:
    """`of_pod` and `job_state` read the same labels (observe.label_coordinates and
    label_rate); a pod whose rate label is not a number is no trial's, a Job keeps it."""
    from scalingstudy.cluster.manifests import LABEL_LEARNING_RATE
    from scalingstudy.cluster.observe import job_state
    from scalingstudy.cluster.pod_logs import of_pod

    labels = {LABEL_TRIAL: "t", LABEL_DATA_SIZE: "100", LABEL_MODEL_SIZE: "4", LABEL_SEED: "0"}

    def pod(**changed: str | None) -> dict[str, Any]:
        merged = {k: v for k, v in {**labels, **changed}.items() if v is not None}
        return {"metadata": {"name": "t", "labels": merged}, "spec": {}, "status": {}}

    found = of_pod(pod(**{LABEL_LEARNING_RATE: "0.01"}))
    assert found is not None and (found.data_size, found.learning_rate) == (100, 0.01)
    plain = of_pod(pod())
    assert plain is not None and plain.learning_rate is None
    for broken in ({LABEL_LEARNING_RATE: "x"}, {LABEL_SEED: "a"}, {LABEL_TRIAL: None}):
        assert of_pod(pod(**broken)) is None, broken
    job = job_state(pod(**{LABEL_LEARNING_RATE: "x"}))
    assert job.coordinates == (100, 4, 0) and job.learning_rate is None


def test_a_push_from_before_the_attempt_began_is_an_earlier_attempts() -> None:
    """Prometheus holds the evicted attempt's last push until it scrapes the retry's
    first: its latest (and curve) are not compared with the retry's log."""
    pushed = {"t1": {"steps": 50.0, "validation_loss": 2.5, "push_time_seconds": 100.0},
              "t2": {"steps": 50.0, "validation_loss": 2.5, "push_time_seconds": 300.0},
              "t3": {"steps": 50.0, "validation_loss": 2.5}}  # fmt: skip
    assert set(forgery.current(pushed, {"t1": 200.0, "t2": 200.0, "t3": 200.0})) == {"t2", "t3"}


def test_every_prometheus_query_shares_the_circuit_breaker() -> None:
    """A Prometheus that failed is not asked again before the breaker's wait (a hanging
    one would cost every pruning pass its timeout)."""
    from scalingstudy.cluster.manifests import StudyRef
    from scalingstudy.cluster.metrics import OperatorMetrics
    from scalingstudy.cluster.prometheus import Prometheus, PrometheusUnavailableError
    from scalingstudy.cluster.pruner import Pruner

    prometheus = Prometheus("http://127.0.0.1:9", timeout=0.5)
    pruner = Pruner(None, prometheus, OperatorMetrics())  # type: ignore[arg-type]
    assert pruner._check_progress(StudyRef("s", "ns", "u"), {}, set()) == []
    assert prometheus.retry_at > 0  # the pruning query opened the breaker ...
    with pytest.raises(PrometheusUnavailableError, match="failed recently"):
        prometheus.study_results("ns", "s")  # ... which the results' query then meets


def test_a_trials_attempt_begins_with_its_latest_pod_of_its_own_job() -> None:
    from scalingstudy.cluster.pruner import _since

    def pod(name: str, uid: str, made: str) -> dict[str, Any]:
        owner = {"kind": "Job", "name": "t1", "uid": uid, "controller": True}
        return {"metadata": {"name": name, "creationTimestamp": made,
                             "ownerReferences": [owner]}}  # fmt: skip

    pods = {"t1": [pod("a", "uid-t1", "2026-01-01T00:00:00Z"),
                   pod("b", "uid-t1", "2026-01-01T00:10:00Z"),
                   pod("c", "other", "2026-01-01T00:20:00Z")]}  # fmt: skip
    since = _since([_job("t1", rate=0.1)], pods)
    assert since == {"t1": dt.datetime(2026, 1, 1, 0, 10, tzinfo=dt.UTC).timestamp()}
