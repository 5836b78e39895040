"""Local trials forked from a warm process (scalingstudy.local.warm): the same results,
logs and exit statuses as fresh processes, and nothing left behind when the runner dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from scalingstudy import contract
from scalingstudy.local import processes, warm
from scalingstudy.local.runner import run_study
from scalingstudy.planning.plan import plan_trials
from scalingstudy.spec import load_study

pytestmark = pytest.mark.skipif(not warm.available(), reason="warm starts need Linux, no GPU")


def _study(tmp_path: Path, name: str, max_steps: int = 60) -> Path:
    doc = {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": name},
        "spec": {
            "task": {"name": "teacher-student", "options": {"inputDim": 4, "teacherWidth": 8}},
            "dataSizes": {"values": [64, 256, 1024]},
            "modelSizes": {"values": [4]},
            "training": {"minSteps": max_steps, "maxSteps": max_steps, "evalEvery": max_steps // 3,
                         "epochs": 10000, "earlyStopping": {"patience": 1000}},
            "fit": {"bootstrap": 0},
        },
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _children(parent: int) -> list[int]:
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if (_stat(pid) or ("", 0))[1] == parent]


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in "ZX"


@pytest.mark.slow(25)
def test_forked_and_fresh_trials_give_the_same_results_and_logs(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path, "same"))
    fresh = run_study(study, tmp_path / "fresh", workers=2, progress=False, warm_start=False)
    forked = run_study(study, tmp_path / "forked", workers=2, progress=False)
    assert (tmp_path / "forked" / "logs" / "warm-start.log").exists()
    assert not (tmp_path / "fresh" / "logs" / "warm-start.log").exists()
    assert fresh.records.keys() == forked.records.keys() and len(fresh.records) == 3
    for name, record in fresh.records.items():
        assert record.status == forked.records[name].status == "Succeeded"
        assert record.loss is not None and record.loss == forked.records[name].loss  # bitwise
        log = tmp_path / "forked" / "logs" / f"{name}.log"
        events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
        assert events[0] == "start" and events[-1] == "result"


def test_a_forked_trial_keeps_the_trainers_exit_statuses_and_stderr(tmp_path: Path) -> None:
    starter = warm.WarmStarter(tmp_path / "warm.log")
    try:
        env = {**os.environ, contract.ENV_TASK: json.dumps({"name": "no-such-task"}),
               contract.ENV_DATA_SIZE: "64", contract.ENV_MODEL_SIZE: "4"}  # fmt: skip
        bad = starter.start(["--check"], env, tmp_path / "a.log", tmp_path / "a.err")
        assert bad.wait(60) == contract.EXIT_CONFIG_ERROR
        assert "unknown task 'no-such-task'" in (tmp_path / "a.err").read_text()
        # A trial that never ends until killed: SIGKILL reads as -9, as from Popen.
        env = {**env, contract.ENV_TASK: json.dumps({"name": "teacher-student"}),
               contract.ENV_TRAINING: json.dumps({"minSteps": 10**7, "maxSteps": 10**7,
                                                  "evalEvery": 10**6})}  # fmt: skip
        long = starter.start([], env, tmp_path / "b.log", tmp_path / "b.err")
        assert long.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            long.wait(0.2)
        assert os.getsid(long.pid) == long.pid  # its own session, like a fresh trial
        os.killpg(long.pid, signal.SIGKILL)
        assert long.wait(30) == -signal.SIGKILL
    finally:
        starter.close()
    assert starter.process.returncode == 0


def test_when_the_warm_process_is_gone_a_trial_starts_fresh(tmp_path: Path) -> None:
    path = _study(tmp_path, "gone")
    study = load_study(path)
    trial = plan_trials("gone", study.spec)[0]
    starter = warm.WarmStarter(tmp_path / "warm.log")
    starter.process.kill()
    starter.process.wait()
    env = {contract.ENV_TASK: json.dumps({"name": "teacher-student"}),
           contract.ENV_DATA_SIZE: "64", contract.ENV_MODEL_SIZE: "4",
           contract.ENV_TRAINING: json.dumps({"minSteps": 10, "maxSteps": 10})}  # fmt: skip
    command = processes.trainer_command(None, None)
    running = processes.start(trial, command, {**env, contract.ENV_RESULT_FILE: str(
        tmp_path / "r.json")}, tmp_path / "r.json", tmp_path, starter)  # fmt: skip
    starter.close()
    assert isinstance(running.process, subprocess.Popen)
    assert running.process.wait(120) == 0 and (tmp_path / "r.json").exists()
    running.close()


@pytest.mark.slow(20)
def test_a_killed_runner_leaves_no_forked_trial_behind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = subprocess.Popen(
        [sys.executable, "-m", "scalingstudy.cli", "run", str(_study(tmp_path, "orphans", 10**6)),
         "--out", str(out), "--quiet", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        trials: list[int] = []
        while len(trials) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            trials = [pid for zygote in _children(runner.pid) for pid in _children(zygote)]
        assert len(trials) == 2, "two forked trials should be training"
    finally:
        runner.kill()
        runner.wait()
    deadline = time.monotonic() + 20  # a trial would train for minutes
    while any(_alive(pid) for pid in trials) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in trials)
    assert not (out / "results.csv").exists()  # nothing finished, nothing invented


def test_a_warm_process_too_slow_to_import_is_given_up_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung import must not cost every trial the wait: the first gives up, the rest
    start fresh at once."""
    monkeypatch.setattr(warm, "READY_SECONDS", 0.01)
    starter = warm.WarmStarter(tmp_path / "warm.log")
    try:
        with pytest.raises(warm.WarmStartError, match="imports"):
            starter.start([], dict(os.environ), tmp_path / "a", tmp_path / "b")
        started = time.monotonic()
        with pytest.raises(warm.WarmStartError, match="ended"):
            starter.start([], dict(os.environ), tmp_path / "a", tmp_path / "b")
        assert time.monotonic() - started < 1
    finally:
        starter.close()
    assert starter.process.returncode is not None


#: A scripted warm process (the one fault not produced for real: the kernel giving a
#: finished trial's pid to the next one): both requests are answered with the pid of one
#: long-lived process, and the first "ends" in between, as a reaped trial whose pid the
#: next fork receives.
PID_REUSE_PEER = """
import json, subprocess, sys
sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
def send(message):
    sys.stdout.write(json.dumps(message) + "\\n")
    sys.stdout.flush()
send({"ready": True})
for n, line in enumerate(sys.stdin):
    send({"id": json.loads(line)["id"], "pid": sleeper.pid})
    if n == 0:
        send({"pid": sleeper.pid, "exit": 0})
sleeper.kill()
"""


def test_a_pid_given_again_is_a_new_trial_not_the_finished_one(tmp_path: Path) -> None:
    """The exit table was keyed by pid and never pruned: the second trial read as
    finished at once ("exited 0 but wrote no result file")."""
    peer = tmp_path / "peer.py"
    peer.write_text(PID_REUSE_PEER)
    starter = warm.WarmStarter(tmp_path / "warm.log", program=[sys.executable, str(peer)])
    try:
        first = starter.start([], {}, tmp_path / "a", tmp_path / "b")
        second = starter.start([], {}, tmp_path / "c", tmp_path / "d")
        assert first.pid == second.pid
        assert first.wait(30) == 0  # the first one's exit is still its own
        assert second.poll() is None  # the second runs
        with pytest.raises(subprocess.TimeoutExpired):
            second.wait(0.1)
        assert starter.exits == {} and list(starter.forked.values()) == [second.request]
    finally:
        starter.close()


#: stop_all with the warm process gone, in a runner that is a child subreaper (as under
#: an init that does not reap): the orphaned trial stays a zombie of this process.
GONE_WARM_RUNNER = """
import ctypes, json, os, signal, sys, time
from pathlib import Path
from scalingstudy import contract
from scalingstudy.local import processes, warm
from scalingstudy.planning.plan import Trial

ctypes.CDLL("libc.so.6").prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
tmp = Path(sys.argv[1])
starter = warm.WarmStarter(tmp / "warm.log")
env = {**os.environ, contract.ENV_TASK: json.dumps({"name": "teacher-student"}),
       contract.ENV_DATA_SIZE: "64", contract.ENV_MODEL_SIZE: "4",
       contract.ENV_TRAINING: json.dumps({"minSteps": 10**7, "maxSteps": 10**7,
                                          "evalEvery": 10**6})}
trial = starter.start([], env, tmp / "t.log", tmp / "t.err")
running = processes.Running(Trial(64, 4, 0, "t"), trial, tmp / "r.json", tmp / "t.err",
                            time.monotonic(), ())
time.sleep(1.0)  # it trains
starter.process.kill()
starter.process.wait()
processes.stop_all([running])
print(json.dumps({"code": trial.returncode}))
"""


@pytest.mark.slow(15)
def test_stop_all_ends_when_the_warm_process_is_gone(tmp_path: Path) -> None:
    """stop_all used to raise TimeoutExpired out of run_study's finally: an orphaned
    trial no one reaps (a zombie) still read as running, for ever."""
    script = tmp_path / "runner.py"
    script.write_text(GONE_WARM_RUNNER)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"code": -signal.SIGTERM}
