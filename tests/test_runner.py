"""`scalingstudy run`: results recorded as trials end, resume after a kill, failures kept."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.scaling_truth import random_truth
from scalingstudy.local.runner import run_study
from scalingstudy.spec import load_study
from scalingstudy.status import StageWindow
from tests.browser import render
from tests.conftest import run_cli

HERE = Path(__file__).resolve().parent


def _study(
    tmp_path: Path, *, env: dict[str, str] | None = None, name: str = "fake", **spec: Any
) -> Path:
    doc = {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": name},
        "spec": {
            "task": {"name": "known-curve"},
            "trainer": {
                "command": [sys.executable, str(HERE / "contract_trainer.py")],
                "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
            },
            "dataSizes": {"min": 100, "max": 3200, "factor": 2},
            "modelSizes": {"values": [2, 8, 32]},
            "fit": {"bootstrap": 50},
            **spec,
        },
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_run_writes_results_fit_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(_study(tmp_path)), "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 18
    fit = json.loads((out / "fit.json").read_text())
    assert -0.45 < fit["learning_curve"]["beta"] < -0.35
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "beta_g" in result.stdout and "beta_p" in result.stdout
    # report.html, in a real browser: the plot decodes, the exponent is there, no error.
    page = render(out / "report.html")
    assert page.problems == [] and page.image_widths["plot"] > 500
    assert f"{fit['learning_curve']['beta']:.4f}" in page.text
    assert "18 trials succeeded" in page.text
    # the results CSV is valid input of `scalingstudy fit`
    refit = run_cli("fit", str(out / "results.csv"), "--json", "--bootstrap", "0")
    assert refit.returncode == 0, refit.stderr
    assert json.loads(refit.stdout)["learning_curve"]["beta"] == pytest.approx(
        fit["learning_curve"]["beta"], abs=1e-6
    )


@pytest.mark.slow(20)
def test_killed_run_resumes_without_rerunning_or_losing_trials(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    study = _study(tmp_path, env={"CALLS_LOG": str(calls), "TRIAL_SECONDS": "0.3"})
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "scalingstudy.cli",
        "run",
        str(study),
        "--out",
        str(out),
        "--workers",
        "2",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list((out / "trials").glob("*.json"))) < 5:
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = {p.stem for p in (out / "trials").glob("*.json")}
    assert 5 <= len(finished_before) < 18

    resumed = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    finished_after = {p.stem for p in (out / "trials").glob("*.json")}
    assert len(finished_after) == 18
    assert finished_before <= finished_after
    starts = _calls(calls)
    rerun = {t for t in starts if starts.count(t) > 1}
    # a trial that had finished is never started again; one cut off mid-run may be
    assert not (set(rerun) & finished_before)
    assert set(starts) == finished_after
    # no trainer outlives the killed runner
    time.sleep(0.5)
    assert _processes_with(f"CALLS_LOG={calls}") == []


def _processes_with(env_entry: str) -> list[int]:
    """Live processes of this test only (other tests run the same trainer script)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if env_entry.encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def test_failed_trial_is_recorded_and_others_continue(tmp_path: Path) -> None:
    study = _study(tmp_path, env={"FAIL_TRIALS": "fake-d200-m8-s0"})
    out = tmp_path / "out"
    result = run_cli("run", str(study), "--out", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "trials" / "fake-d200-m8-s0.json").read_text())
    assert record["status"] == "Failed"
    assert record["reason"] == "ExitCode3"
    assert "CUDA out of memory" in record["message"]
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 17
    assert "failed fake-d200-m8-s0" in result.stderr


def test_too_many_failures_fail_the_study(tmp_path: Path) -> None:
    failing = ",".join(f"fake-d100-m{m}-s0" for m in (2, 8, 32))
    study = _study(tmp_path, env={"FAIL_TRIALS": failing}, maxFailedTrials=2, parallelism=1)
    result = run_cli("run", str(study), "--out", str(tmp_path / "out"), "--workers", "1")
    assert result.returncode == 1
    assert "3 trials failed (maxFailedTrials is 2)" in result.stderr


def test_resume_refuses_a_changed_task(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", str(_study(tmp_path)), "--out", str(out)).returncode == 0
    changed = _study(tmp_path, training={"learningRate": 0.1})
    result = run_cli("run", str(changed), "--out", str(out))
    assert result.returncode == 2
    assert "different study setup" in result.stderr


def test_invalid_study_file_exits_2_naming_fields(tmp_path: Path) -> None:
    path = _study(tmp_path, seeds=0, parallelism=0)
    result = run_cli("run", str(path))
    assert result.returncode == 2
    assert "spec.seeds" in result.stderr and "spec.parallelism" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow(10)
def test_real_training_study_end_to_end(tmp_path: Path) -> None:
    """The built-in trainer (real PyTorch) on a small teacher-student grid."""
    doc = {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": "mini"},
        "spec": {
            "task": {
                "name": "teacher-student",
                "options": {"inputDim": 8, "teacherWidth": 16, "noise": 0.02},
            },
            "dataSizes": {"values": [64, 256, 1024]},
            "modelSizes": {"values": [4, 32]},
            "training": {
                "minSteps": 100,
                "maxSteps": 600,
                "epochs": 20,
                "evalEvery": 50,
                "learningRate": 0.005,
            },
            "fit": {"bootstrap": 50},
        },
    }
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 6
    assert all(float(r["loss"]) > 0 and int(r["parameters"]) > 0 for r in rows)
    fit = json.loads((out / "fit.json").read_text())
    assert fit["learning_curve"]["beta"] < 0
    log_lines = (out / "logs" / "mini-d64-m4-s0.log").read_text().splitlines()
    assert json.loads(log_lines[-1])["event"] == "result"
    assert (out / "learning_curve.png").stat().st_size > 1000


def test_a_task_that_cannot_work_is_refused_before_any_trial(tmp_path: Path) -> None:
    """The preflight runs the built-in trainer's --check on the largest trial: a missing
    corpus is one line naming spec.task, and no trial starts."""
    doc = {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": "no-corpus"},
        "spec": {
            "task": {"name": "char-lm", "options": {"corpus": str(tmp_path / "missing")}},
            "dataSizes": {"values": [1024, 2048, 4096]},
            "modelSizes": {"values": [8]},
        },
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run_cli("run", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("scalingstudy: error: spec.task: ") and "missing" in line
    assert not (tmp_path / "out" / "trials").exists()


def test_a_bare_python_runs_the_studys_interpreter_not_the_first_on_path(
    tmp_path: Path,
) -> None:
    """`trainer.command: [python, train.py]` used to run whichever python came first on
    PATH: one without the study's packages failed every trial."""
    decoy = tmp_path / "bin"
    decoy.mkdir()
    for name in ("python", "python3"):
        (decoy / name).write_text(
            "#!/bin/sh\necho 'No module named scalingstudy_trainer' >&2\nexit 1\n"
        )
        (decoy / name).chmod(0o755)
    study = _study(tmp_path, dataSizes={"values": [100, 200, 400]}, modelSizes={"values": [2]})
    doc = yaml.safe_load(study.read_text())
    doc["spec"]["trainer"]["command"] = ["python", str(HERE / "contract_trainer.py")]
    study.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PATH": f"{decoy}:{os.environ['PATH']}"}
    result = run_cli("run", str(study), "--out", str(tmp_path / "out"), "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    assert f"runs with {sys.executable}" in result.stderr
    assert len(list(csv.DictReader((tmp_path / "out" / "results.csv").open()))) == 3


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        (["python", "no_such_train.py"], "script 'no_such_train.py' does not exist"),
        (["python", "-m", "no_such_module_xyz"], "module 'no_such_module_xyz' not found"),
        (["no-such-program-xyz", "train.py"], "program 'no-such-program-xyz' not found"),
    ],
)
def test_a_custom_command_that_cannot_start_is_refused_before_any_trial(
    tmp_path: Path, command: list[str], problem: str
) -> None:
    study = _study(tmp_path)
    doc = yaml.safe_load(study.read_text())
    doc["spec"]["trainer"]["command"] = command
    study.write_text(yaml.safe_dump(doc))
    result = run_cli("run", str(study), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("scalingstudy: error: spec.trainer.command") and problem in line, line
    assert not (tmp_path / "out" / "trials").exists()


def test_a_dry_run_says_what_would_run_and_runs_nothing(tmp_path: Path) -> None:
    root = HERE.parent
    out = tmp_path / "never"
    planned = run_cli("plan", str(root / "examples" / "adaptive.yaml"), "--out", str(out),
                      "--workers", "3")  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    text = planned.stdout
    assert "grid: 7 x 6 x 1 seed = 42 trials" in text and "design adaptive" in text
    assert "starts first (3 at a time): adaptive-d100-m4-s0" in text
    assert "budget: 0.5 CPU-hours" in text and "nothing was run" in text
    assert "computeShare: 0.4" in text
    assert not out.exists()
    # From an earlier run's results: nothing left to start, and a priced grid.
    study = _study(tmp_path, dataSizes={"values": [100, 200, 400]}, modelSizes={"values": [2]})
    done = tmp_path / "done"
    assert run_cli("run", str(study), "--out", str(done), "--quiet").returncode == 0
    (done / "trials" / "fake-d400-m2-s0.json").unlink()
    again = run_cli("run", "--dry-run", str(study), "--out", str(done))
    assert again.returncode == 0, again.stderr
    assert "earlier results: 2 succeeded" in again.stdout
    assert "starts first" in again.stdout and "fake-d400-m2-s0" in again.stdout
    assert "expected cost of the full grid" in again.stdout
    assert not (done / "trials" / "fake-d400-m2-s0.json").exists()  # still not run


def test_the_preflight_never_loads_torch_into_the_cli() -> None:
    code = (
        "import sys\n"
        "from scalingstudy.cli import _preflight\n"
        "from scalingstudy.spec import load_study\n"
        "_preflight(load_study('examples/quickstart.yaml'))\n"
        "print('torch' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def _truth_study(tmp_path: Path, name: str, **spec: Any) -> Path:
    """A study whose trainer is the known ground truth of benchmarks/scaling_truth.py."""
    truth = json.dumps(dataclasses.asdict(random_truth(2)))
    trainer = {
        "command": [sys.executable, str(HERE.parent / "benchmarks" / "scaling_truth.py")],
        "env": [{"name": "SCALING_TRUTH", "value": truth}],
    }
    return _study(tmp_path, name=name, task={"name": "simulated"}, trainer=trainer, **spec)


def _adaptive_study(tmp_path: Path, **design: Any) -> Path:
    return _truth_study(
        tmp_path, "adapt",
        dataSizes={"values": [1000, 2000, 4000, 8000, 16000]},
        modelSizes={"values": [4, 8, 16, 32, 64]},
        fit={"bootstrap": 40},
        design={"strategy": "adaptive", **design},
    )  # fmt: skip


@pytest.mark.slow(30)
def test_adaptive_run_skips_grid_trials_and_an_interrupted_run_resumes_to_the_same(
    tmp_path: Path,
) -> None:
    study = _adaptive_study(tmp_path)
    whole = tmp_path / "whole"
    result = run_cli("run", str(study), "--out", str(whole), "--workers", "2")
    assert result.returncode == 0, result.stderr
    design = json.loads((whole / "design.json").read_text())
    assert design["strategy"] == "adaptive" and design["stopReason"] == "AllDataSizes"
    assert (
        15 < design["trialsStarted"] < 25
        and design["trialsSkipped"] == 25 - (design["trialsStarted"])
    )
    assert "design adaptive:" in result.stdout
    rows = {r["trial"] for r in csv.DictReader((whole / "results.csv").open())}
    assert len(rows) == design["trialsStarted"]

    # interrupted after 8 results (the local runner stops as on Ctrl-C), then resumed
    cut = tmp_path / "cut"
    seen: list[str] = []

    def interrupt(rec: Any) -> None:
        seen.append(rec.trial)
        if len(seen) == 8:
            raise KeyboardInterrupt

    loaded = load_study(study)
    with pytest.raises(KeyboardInterrupt):
        run_study(loaded, cut, workers=2, progress=False, on_record=interrupt)
    resumed = run_study(loaded, cut, workers=2, progress=False)
    assert set(resumed.records) == rows
    assert resumed.design is not None and resumed.design.windows == [
        StageWindow.model_validate(w) for w in design["windows"]
    ]
    assert resumed.ran == len(rows) - 8
    first = json.loads((whole / "fit.json").read_text())["learning_curve"]["beta"]
    assert resumed.fit is not None and resumed.fit.learning_curve is not None
    assert resumed.fit.learning_curve.beta == pytest.approx(first, abs=1e-9)


def test_a_learning_rate_sweep_keeps_the_best_rate_per_cell(tmp_path: Path) -> None:
    truth = random_truth(2)
    # the truth's best rate is 0.01 x 16 / model size: 0.01, 0.005, 0.0025
    path = _truth_study(
        tmp_path, "adapt",
        dataSizes={"values": [1000, 2000, 4000]},
        modelSizes={"values": [16, 32, 64]},
        fit={"bootstrap": 40},
        learningRates={"values": [0.005, 0.01, 0.02]},
    )  # fmt: skip
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 27 and {r["learning_rate"] for r in rows} == {"0.005", "0.01", "0.02"}
    assert all("-l" in r["trial"] for r in rows)
    winners = json.loads((out / "design.json").read_text())["learningRates"]
    best = {w["modelSize"]: (w["learningRate"], w["atEdge"]) for w in winners}
    assert best == {16: (0.01, False), 32: (0.005, True), 64: (0.005, True)}
    assert "edge of the sweep in 6 of 9 cells" in result.stdout
    # the fit sees one configuration per cell: the winners' losses
    fit = json.loads((out / "fit.json").read_text())
    winner_loss = {
        (int(r["data_size"]), int(r["model_size"])): float(r["loss"])
        for r in rows
        if float(r["learning_rate"]) == best[int(r["model_size"])][0]
    }
    for b in fit["best"]:
        assert b["loss"] == pytest.approx(
            min(v for (d, _), v in winner_loss.items() if d == b["data_size"])
        )
    assert truth.learning_rate_penalty(16, 0.01) == 1.0


@pytest.mark.slow(20)
def test_a_trial_of_several_processes_runs_locally_with_the_same_results(tmp_path: Path) -> None:
    """spec.trainer.nodes x processesPerPod processes on this one machine (DDP over gloo):
    the same study file as on a cluster, the results of one process within float noise."""
    losses = {}
    for trainer in ({}, {"nodes": 2}):
        doc = {
            "apiVersion": "scalingstudy.io/v1alpha1",
            "kind": "ScalingStudy",
            "metadata": {"name": "ddp"},
            "spec": {
                "task": {"name": "teacher-student", "options": {"inputDim": 8, "teacherWidth": 16}},
                "trainer": trainer,
                "dataSizes": {"values": [64, 256, 1024]},
                "modelSizes": {"values": [8]},
                "training": {"minSteps": 200, "maxSteps": 200, "evalEvery": 50},
                "fit": {"bootstrap": 20},
            },
        }
        path = tmp_path / "ddp.yaml"
        path.write_text(yaml.safe_dump(doc))
        out = tmp_path / f"out{len(losses)}"
        result = run_cli("run", str(path), "--out", str(out), "--workers", "1")
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader((out / "results.csv").open()))
        losses[len(losses)] = {r["trial"]: float(r["loss"]) for r in rows}
        reported = [json.loads(line) for log in (out / "logs").glob("*.log")
                    for line in log.read_text().splitlines() if '"result"' in line]  # fmt: skip
        assert len(reported) == 3
        assert {r["processes"] for r in reported} == {2 if trainer else 1}
    assert losses[0].keys() == losses[1].keys()
    for trial, loss in losses[0].items():
        assert losses[1][trial] == pytest.approx(loss, rel=1e-3)


@pytest.mark.slow(15)
def test_trials_a_stop_cancels_are_spent_locally_as_on_the_cluster(tmp_path: Path) -> None:
    """An adaptive study that stops while the next stage's trials run: `run` stops them
    and counts their time (design.json's cancelled runs, in deviceSeconds), as the
    operator does; a resumed run keeps it (cancelledSeconds)."""
    study = _adaptive_study(tmp_path, stopWhen={"betaIntervalWidth": 5.0, "minDataSizes": 4})
    doc = yaml.safe_load(study.read_text())
    # The last stage's trials outlast the stop, which comes from the stage before's fit.
    doc["spec"]["trainer"]["env"] += [
        {"name": "TRIAL_SECONDS", "value": "0.5"},
        {"name": "TRIAL_SECONDS_AT", "value": '{"16000": 60}'},
    ]
    study.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    result = run_cli("run", str(study), "--out", str(out), "--workers", "6")
    assert result.returncode == 0, result.stderr
    design = json.loads((out / "design.json").read_text())
    assert design["stopReason"] == "TargetReached", design
    cancelled = design.get("cancelled") or []
    assert cancelled, design  # the next stage had started: its trials were stopped
    assert all(0 < c["seconds"] < 60 for c in cancelled), cancelled
    assert all("-d16000-" in c["trial"] for c in cancelled), cancelled
    records = [json.loads(f.read_text()) for f in (out / "trials").glob("*.json")]
    finished = sum(r["durationSeconds"] for r in records)  # also those left out of the fit
    lost = sum(c["seconds"] for c in cancelled)
    assert design["deviceSeconds"] == pytest.approx(finished + lost, abs=0.2)
    again = run_cli("run", str(study), "--out", str(out), "--workers", "6")
    assert again.returncode == 0, again.stderr
    resumed = json.loads((out / "design.json").read_text())
    assert resumed["cancelledSeconds"] == pytest.approx(lost, abs=0.01)
    assert resumed["deviceSeconds"] == pytest.approx(design["deviceSeconds"], abs=0.2)
