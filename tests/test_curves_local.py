"""Curves of a local run (issue 38 items 1 and 2): the runner follows each running trial's
own log incrementally, the progress line shows the study's best so far, and the output
folder gets curves.csv (for resumed runs too) and report.html's curve panels, bounded
however often a trial evaluates; a trial that prints no evaluation works as before."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from scalingstudy.local.curve_logs import MAX_LINE_BYTES, LogFollower, read_log_curve
from scalingstudy.local.live_curves import best_so_far
from scalingstudy.local.runner import _Loop, run_study
from scalingstudy.local.store import ResultStore
from scalingstudy.planning.plan import Plan
from scalingstudy.render.output import write_study_output
from scalingstudy.spec import load_study, parse_spec
from scalingstudy.status import TrialRecord
from scalingstudy_sdk.curve import MAX_POINTS, Curve, CurvePoint, read_curve
from tests.browser import render


def _eval(step: int, loss: float) -> str:
    return json.dumps({"ts": 1.0 + step, "event": "eval", "step": step, "validation_loss": loss})


# ------------------------------------------------------------------ following a log


def test_a_followed_log_is_read_only_where_it_grew_and_ends_as_read_whole(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_text(json.dumps({"ts": 1.0, "event": "start", "step_budget": 50}) + "\n")
    follower = LogFollower(log)
    assert follower.poll().points == () and follower.poll().step_budget == 50
    with log.open("a") as handle:
        handle.write(_eval(10, 2.0) + "\n" + _eval(20, 1.5)[:20])  # a line half written
    assert [p.step for p in follower.poll().points] == [10]
    offset = follower.offset
    assert offset == log.stat().st_size  # nothing is read twice: the next look starts here
    with log.open("a") as handle:
        handle.write(_eval(20, 1.5)[20:] + "\n" + "x" * (3 * MAX_LINE_BYTES) + "\n")
        handle.write(_eval(30, 1.2))  # the last line, no newline: the trial ended
    assert [p.step for p in follower.poll().points] == [10, 20]
    assert len(follower.partial) <= MAX_LINE_BYTES  # an over-long line is not buffered
    assert follower.finish() == read_curve(log.read_text().splitlines())
    assert [p.step for p in follower.finish().points] == [10, 20, 30]


def test_a_log_started_anew_is_followed_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_text(_eval(10, 2.0) + "\n" + _eval(20, 1.0) + "\n")
    follower = LogFollower(log)
    assert len(follower.poll().points) == 2
    log.write_text(_eval(5, 3.0) + "\n")  # a retry truncates the log
    assert [p.step for p in follower.poll().points] == [5]
    assert read_log_curve(tmp_path / "missing.log") is None


# ------------------------------------------------------------------ best so far


def _record(trial: str, status: str, loss: float | None = None, **extra: Any) -> TrialRecord:
    return TrialRecord(trial=trial, data_size=64, model_size=4, seed=0, status=status,
                       loss=loss, **extra)  # fmt: skip


def _curve(*losses: float) -> Curve:
    return Curve(tuple(CurvePoint(10 * (i + 1), validation_loss=v) for i, v in enumerate(losses)))


def test_best_so_far_takes_finished_results_and_running_curves() -> None:
    records = [_record("a", "Succeeded", 0.5), _record("b", "Failed")]
    assert best_so_far(records, {}, "validation_loss") == 0.5
    live = {"c": _curve(0.9, 0.4, math.nan), "d": _curve()}
    assert best_so_far(records, live, "validation_loss") == 0.4  # a running trial leads
    pruned = _record("e", "Pruned", best_loss=0.3, pruned_at_step=20)
    assert best_so_far([*records, pruned], live, "validation_loss") == 0.3
    assert best_so_far([], {"d": _curve(math.nan)}, "validation_loss") is None
    # Another metric: the curves (validation losses) are another number; results only.
    assert best_so_far(records, live, "bpc") == 0.5


# ------------------------------------------------------------------ a real local run

BUILT_IN = {
    "task": {"name": "teacher-student", "options": {"inputDim": 4, "teacherWidth": 8}},
    "dataSizes": {"values": [64, 128, 256]},
    "modelSizes": {"values": [4, 16]},
    "training": {"minSteps": 30, "maxSteps": 60, "evalEvery": 10, "learningRate": 0.005},
    "fit": {"bootstrap": 20},
}


def _write_study(tmp_path: Path, name: str, spec: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    doc = {"apiVersion": "scalingstudy.io/v1alpha1", "kind": "ScalingStudy",
           "metadata": {"name": name}, "spec": spec}  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


def _curves_csv(out: Path) -> dict[str, list[dict[str, str]]]:
    by_trial: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in csv.DictReader((out / "curves.csv").open()):
        by_trial[row["trial"]].append(row)
    return dict(by_trial)


def test_a_local_study_writes_curves_that_match_each_trials_log(tmp_path: Path) -> None:
    study = load_study(_write_study(tmp_path, "mini", BUILT_IN))
    out = tmp_path / "out"
    run = run_study(study, out, workers=2, progress=False)
    assert run.ran == 6 and "curves" in run.files
    results = {r["trial"]: r for r in csv.DictReader((out / "results.csv").open())}
    curves = _curves_csv(out)
    assert set(curves) == set(results)
    for trial, rows in curves.items():
        evals = [json.loads(x) for x in (out / "logs" / f"{trial}.log").read_text().splitlines()
                 if json.loads(x).get("event") == "eval"]  # fmt: skip
        assert [(int(r["step"]), float(r["validation_loss"]), float(r["train_loss"]),
                 int(r["samples_seen"])) for r in rows] == [
            (e["step"], e["validation_loss"], e["train_loss"], e["samples_seen"]) for e in evals
        ]  # fmt: skip
        assert {r["status"] for r in rows} == {"Succeeded"}
        assert all(float(r["seconds"]) >= 0 for r in rows)
        # The built-in trainer reports its lowest evaluation, and stops at its last one.
        result = results[trial]
        assert float(result["loss"]) == min(float(r["validation_loss"]) for r in rows)
        assert int(rows[-1]["step"]) == int(result["steps"])
        assert float(rows[-1]["validation_loss"]) >= float(result["loss"])
    page = render(out / "report.html")
    assert page.problems == [] and page.scripts == 0
    assert page.svg_lines == {"curves-64": 2, "curves-128": 2, "curves-256": 2}
    assert "Training curves" in page.text and "log-log" in page.text

    # Resumed in the same folder: nothing runs again, and curves.csv is the same, read
    # from the earlier trials' logs.
    before = (out / "curves.csv").read_text()
    (out / "curves.csv").unlink()
    again = run_study(study, out, workers=2, progress=False)
    assert again.ran == 0 and (out / "curves.csv").read_text() == before


MANY_EVALS = """
import json, os, sys
from scalingstudy_sdk import Trial
trial = Trial.from_env_or_exit()
count = int(os.environ["EVALS_" + str(trial.model_size)])
for step in range(1, count + 1):
    trial.progress(step=step, validation_loss=1.0 + 1.0 / step, step_budget=count)
print("no evaluation here" if count == 0 else "done", flush=True)
trial.report(validation_loss=1.0 + 1.0 / max(count, 1) + 1.0 / trial.model_size,
             parameters=trial.model_size)
"""


def test_ten_thousand_evaluations_are_bounded_and_none_is_as_before(tmp_path: Path) -> None:
    script = tmp_path / "trainer.py"
    script.write_text(MANY_EVALS)
    spec = {
        "task": {"name": "many-evals"},
        "trainer": {"command": [sys.executable, str(script)],
                    "env": [{"name": "EVALS_2", "value": "10000"},
                            {"name": "EVALS_8", "value": "0"}]},
        "dataSizes": {"values": [100, 200, 400]}, "modelSizes": {"values": [2, 8]},
        "fit": {"bootstrap": 20},
    }  # fmt: skip
    out = tmp_path / "out"
    run = run_study(load_study(_write_study(tmp_path, "many", spec)), out, workers=2,
                    progress=False)  # fmt: skip
    assert sum(r.status == "Succeeded" for r in run.records.values()) == 6
    curves = _curves_csv(out)
    assert set(curves) == {f"many-d{d}-m2-s0" for d in (100, 200, 400)}  # model 8: none
    for rows in curves.values():
        assert len(rows) <= MAX_POINTS
        assert rows[0]["step"] == "1" and rows[-1]["step"] == "10000"
    html = (out / "report.html").read_text()
    assert "http" not in html and "<script" not in html
    assert html.count("<polyline") == 3
    for points in html.split('points="')[1:]:
        assert len(points.split('"', 1)[0].split()) <= MAX_POINTS
    page = render(out / "report.html")
    assert page.problems == [] and page.svg_lines == {
        "curves-100": 1,
        "curves-200": 1,
        "curves-400": 1,
    }


def test_a_study_whose_trials_print_no_evaluation_has_no_curves(tmp_path: Path) -> None:
    script = tmp_path / "trainer.py"
    script.write_text(MANY_EVALS)
    spec = {
        "task": {"name": "quiet"},
        "trainer": {"command": [sys.executable, str(script)],
                    "env": [{"name": "EVALS_2", "value": "0"}, {"name": "EVALS_8", "value": "0"}]},
        "dataSizes": {"values": [100, 200, 400]}, "modelSizes": {"values": [2, 8]},
    }  # fmt: skip
    out = tmp_path / "out"
    run = run_study(load_study(_write_study(tmp_path, "quiet", spec)), out, workers=1,
                    progress=False)  # fmt: skip
    assert sum(r.status == "Succeeded" for r in run.records.values()) == 6
    assert "curves" not in run.files and not (out / "curves.csv").exists()
    html = (out / "report.html").read_text()
    assert "Training curves" not in html and "<svg" not in html


@pytest.mark.parametrize("status", ["Succeeded", "Pruned"])
def test_a_record_without_a_log_keeps_its_compact_curve(tmp_path: Path, status: str) -> None:
    """A pruned trial's record keeps a compact curve (its pod may be gone); a succeeded
    trial without a log has none to show."""
    spec = parse_spec({"task": {"name": "teacher-student"},
                       "dataSizes": {"values": [64, 128, 256]},
                       "modelSizes": {"values": [4]}})  # fmt: skip
    trial = next(iter(Plan.of("demo", spec)))
    extra: dict[str, Any] = (
        {"best_loss": 0.7, "pruned_at_step": 30, "curve": [[10, 0.9], [30, 0.7]]}
        if status == "Pruned" else {"loss": 0.7}
    )  # fmt: skip
    rec = TrialRecord(trial=trial.name, data_size=64, model_size=4, seed=0, status=status,
                      **extra)  # fmt: skip

    loop = _Loop("demo", spec, ResultStore(tmp_path), {}, 1, None)
    curves = loop.finished_curves([rec])
    out = write_study_output(tmp_path, "demo", spec, [rec], None, "here", curves=curves)
    if status == "Succeeded":
        assert curves == {} and "curves" not in out.files
        return
    rows = list(csv.DictReader(out.files["curves"].open()))
    assert [(r["step"], r["validation_loss"], r["status"]) for r in rows] == [
        ("10", "0.9", "Pruned"), ("30", "0.7", "Pruned")]  # fmt: skip
    html = out.files["report"].read_text()
    assert "class=pruned" in html and "pruned at step 30" in html


# ------------------------------------------------------------------ the pruning hook

SWEEP = """
import math, os, signal, sys, time
from scalingstudy_sdk import Trial
trial = Trial.from_env_or_exit()
bad = trial.learning_rate > 0.01
for step in range(10, 101, 10):
    loss = math.nan if bad and step >= 30 else 1.0 + 10.0 / step
    trial.progress(step=step, validation_loss=loss, step_budget=100)
    if bad and step >= 30:
        break
if bad and os.environ.get("STUBBORN"):  # ignores SIGTERM; ends with its runner
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    for _ in range(300):
        if os.getppid() != parent:
            sys.exit(1)
        time.sleep(0.1)
elif bad:  # a diverged run that would go on for minutes: pruning must stop it
    time.sleep(120)
trial.report(validation_loss=1.0 + 10.0 / 100, parameters=trial.model_size)
"""


def _sweep(tmp_path: Path, stubborn: bool = False) -> Path:
    script = tmp_path / "trainer.py"
    script.write_text(SWEEP)
    env = [{"name": "STUBBORN", "value": "1"}] if stubborn else []
    spec = {
        "task": {"name": "sweep"},
        "trainer": {"command": [sys.executable, str(script)], "env": env},
        "dataSizes": {"values": [100, 200, 400]}, "modelSizes": {"values": [4]},
        "learningRates": {"values": [0.001, 0.1]},
        "design": {"pruning": {"enabled": True}},
        "fit": {"bootstrap": 20},
    }  # fmt: skip
    return _write_study(tmp_path, "sweep", spec)


PRUNED = [f"sweep-d{d}-m4-l0p1-s0" for d in (100, 200, 400)]


def _statuses(out: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["status"] for p in (out / "trials").glob("*.json")}


def test_a_pruned_trial_that_ignores_sigterm_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Before, the run waited for it, and its result, when it came, counted.)"""
    import scalingstudy.local.runner as runner

    monkeypatch.setattr(runner, "PRUNED_KILL_SECONDS", 0.0)
    out = tmp_path / "out"
    run = run_study(load_study(_sweep(tmp_path, stubborn=True)), out, workers=6, progress=False)
    assert sorted(r.trial for r in run.records.values() if r.status == "Pruned") == PRUNED


def test_a_runner_killed_after_pruning_never_trains_the_pruned_trial_again(
    tmp_path: Path,
) -> None:
    """The runner dies (SIGKILL) between its SIGTERM to a pruned trial and that trial's
    end: the resumed run keeps it Pruned and trains nothing again."""
    study, out = _sweep(tmp_path, stubborn=True), tmp_path / "out"
    cmd = [sys.executable, "-m", "scalingstudy.cli", "run", str(study), "--out", str(out),
           "--workers", "6", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while sorted(_statuses(out).values()) != ["Pruned"] * 3 + ["Succeeded"] * 3:
            assert time.monotonic() < deadline, f"not pruned in time: {_statuses(out)}"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    again = run_study(load_study(study), out, workers=6, progress=False)
    assert again.ran == 0
    assert sorted(r.trial for r in again.records.values() if r.status == "Pruned") == PRUNED
    assert all(again.records[name].pruned_at_step == 30 for name in PRUNED)


def test_a_diverged_rate_is_pruned_once_and_a_resumed_run_keeps_it(tmp_path: Path) -> None:
    script = tmp_path / "trainer.py"
    script.write_text(SWEEP)
    spec = {
        "task": {"name": "sweep"},
        "trainer": {"command": [sys.executable, str(script)]},
        "dataSizes": {"values": [100, 200, 400]}, "modelSizes": {"values": [4]},
        "learningRates": {"values": [0.001, 0.1]},
        "design": {"pruning": {"enabled": True}},
        "fit": {"bootstrap": 20},
    }  # fmt: skip
    study = load_study(_write_study(tmp_path, "sweep", spec))
    out = tmp_path / "out"
    run = run_study(study, out, workers=6, progress=False)
    pruned = sorted(r.trial for r in run.records.values() if r.status == "Pruned")
    assert pruned == [f"sweep-d{d}-m4-l0p1-s0" for d in (100, 200, 400)]
    for name in pruned:
        rec = run.records[name]
        assert rec.learning_rate == 0.1 and rec.loss is None and rec.reason == "Pruned"
        assert rec.pruned_at_step == 30 and rec.best_loss == 1.0 + 10.0 / 20
        assert rec.message and "diverged" in rec.message
        assert rec.curve == [[10, 2.0], [20, 1.5]]
        assert rec.duration_seconds is not None and rec.duration_seconds < 100
    assert sum(r.status == "Succeeded" for r in run.records.values()) == 3
    results = list(csv.DictReader((out / "results.csv").open()))
    assert {r["trial"] for r in results}.isdisjoint(pruned)
    statuses = {row["trial"]: row["status"] for row in csv.DictReader((out / "curves.csv").open())}
    assert {statuses[name] for name in pruned} == {"Pruned"}
    assert (out / "report.html").read_text().count("class=pruned") == 3
    # Resumed: a pruned trial is not retried, nor pruned again.
    again = run_study(study, out, workers=6, progress=False)
    assert again.ran == 0
    assert sorted(r.trial for r in again.records.values() if r.status == "Pruned") == pruned


def test_run_says_how_many_trials_were_pruned(tmp_path: Path) -> None:
    """`scalingstudy run`'s summary counts pruned trials apart from failed ones."""
    from tests.conftest import run_cli

    out = tmp_path / "out"
    done = run_cli("run", str(_sweep(tmp_path)), "--out", str(out), "--quiet")
    assert "3/6 trials succeeded, 0 failed, 3 pruned;" in done.stdout, done.stdout + done.stderr
    assert set(PRUNED) <= {n for n, s in _statuses(out).items() if s == "Pruned"}


RIVALS = """
import math, os, signal, sys, time
from pathlib import Path
from scalingstudy_sdk import Trial
trial = Trial.from_env_or_exit()
marks = Path(os.environ["MARKS"])
if trial.learning_rate < 0.05:  # the rival: learns well, then crashes at its end
    for step in range(10, 101, 10):
        trial.progress(step=step, validation_loss=1.0 + 1.0 / step, step_budget=100)
    stopped = marks / (trial.name.replace("l0p01", "l0p1") + ".stopped")
    for _ in range(600):  # it crashes once the other rate was stopped against it
        if stopped.exists():
            break
        time.sleep(0.1)
    sys.exit(3)
marker = marks / trial.name
if marker.exists():  # trained again: this time it ends normally
    for step in range(10, 101, 10):
        trial.progress(step=step, validation_loss=2.0 + 1.0 / step, step_budget=100)
    trial.report(validation_loss=2.01, parameters=4)
    sys.exit(0)
marker.touch()
def partial(signum, frame):  # a trainer that reports what it has when it is stopped
    trial.report(validation_loss=3.0, parameters=4)
    (marks / (trial.name + ".stopped")).touch()
    sys.exit(0)
signal.signal(signal.SIGTERM, partial)
for step in range(10, 31, 10):
    trial.progress(step=step, validation_loss=3.0 if step < 30 else math.nan, step_budget=100)
time.sleep(60)  # never stopped: the test fails on its records, not on a hang
sys.exit(1)
"""


def test_a_pruned_trial_is_trained_again_when_the_rival_it_lost_to_fails(tmp_path: Path) -> None:
    """The diverged rate is pruned against the one that learns; its result written on the
    way out is a partial run's, so it is recorded Pruned. Then that rival crashes: the
    decision lapses and the pruned rate is trained again, to the end (review, issue 38)."""
    script, marks = tmp_path / "trainer.py", tmp_path / "marks"
    script.write_text(RIVALS)
    marks.mkdir()
    spec = {
        "task": {"name": "rivals"},
        "trainer": {"command": [sys.executable, str(script)],
                    "env": [{"name": "MARKS", "value": str(marks)}]},
        "dataSizes": {"values": [100, 200, 400]}, "modelSizes": {"values": [4]},
        "learningRates": {"values": [0.01, 0.1]}, "maxFailedTrials": 5, "parallelism": 2,
        "design": {"pruning": {"enabled": True}}, "fit": {"bootstrap": 20},
    }  # fmt: skip
    out = tmp_path / "out"
    seen: list[tuple[str, str, float | None]] = []
    outcome = run_study(
        load_study(_write_study(tmp_path, "rivals", spec)), out, workers=2, progress=False,
        on_record=lambda r: seen.append((r.trial, r.status, r.loss)),
    )  # fmt: skip
    for d in (100, 200, 400):
        name = f"rivals-d{d}-m4-l0p1-s0"
        mine = [(status, loss) for trial, status, loss in seen if trial == name]
        assert mine == [("Pruned", None), ("Succeeded", 2.01)], (name, seen)
        assert outcome.records[name].loss == 2.01
        assert outcome.records[f"rivals-d{d}-m4-l0p01-s0"].status == "Failed"
