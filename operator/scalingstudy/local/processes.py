"""Trials as child processes: start one, notice when it ends, stop them all."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from scalingstudy.local import warm
from scalingstudy.local.warm import WarmStarter, WarmStartError, die_with_parent
from scalingstudy.planning.plan import Trial


class TrialProcess(Protocol):
    """A trial's process: a fresh one (``subprocess.Popen``) or a forked one
    (``warm.WarmProcess``)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


@dataclass
class Running:
    trial: Trial
    process: TrialProcess
    result_file: Path
    stderr_path: Path
    started: float
    handles: tuple[IO[bytes], ...]
    signalled: bool = False
    """The runner sent it SIGTERM to stop it (pruning): what it writes after is partial."""

    def close(self) -> None:
        for h in self.handles:
            h.close()


#: A bare interpreter name in `trainer.command` (a path is the user's explicit choice).
PYTHON_NAME = re.compile(r"python(3(\.\d+)?)?")


def trainer_command(custom: Sequence[str] | None, args: Sequence[str] | None) -> list[str]:
    """The built-in trainer in this Python environment, or the study's own command. A
    command that starts with a bare ``python``/``python3`` runs with this interpreter (the
    study's), not whichever comes first on PATH: that one may lack the packages."""
    if custom:
        program, *rest = custom
        if PYTHON_NAME.fullmatch(program):
            program = sys.executable
        return [program, *rest, *(args or [])]
    return [sys.executable, "-m", "scalingstudy_trainer", *(args or [])]


def builtin_args(command: Sequence[str]) -> list[str] | None:
    """The arguments of the built-in trainer's command; None for a study's own command."""
    if list(command[:3]) == trainer_command(None, None):
        return list(command[3:])
    return None


def warm_starter_for(command: Sequence[str], log: Path | None = None) -> WarmStarter | None:
    """A warm process to fork the trials of ``command`` from (``local.warm``), started now;
    None where forking does not apply: a study's own command, or a machine where
    ``warm.available`` says no (a GPU's driver, no torch)."""
    if builtin_args(command) is None or not warm.available():
        return None
    return WarmStarter(log)


def command_problem(command: Sequence[str], env: Mapping[str, str]) -> str | None:
    """Why ``command`` (as ``trainer_command`` made it) cannot start, checked once before
    any trial: its program is not found, or the script or module it runs is missing.
    None when it looks runnable."""
    program, *rest = command
    found = shutil.which(program, path=env.get("PATH", os.environ.get("PATH")))
    if found is None:
        return f"program {program!r} not found (not a file, nor on PATH)"
    if not PYTHON_NAME.fullmatch(Path(program).name) and program != sys.executable:
        return None
    options = iter(rest)
    for arg in options:
        if arg == "-m":
            module = next(options, "")
            probe = subprocess.run(
                [program, "-c", "import importlib.util, sys; "
                 "sys.exit(importlib.util.find_spec(sys.argv[1]) is None)", module],
                env={**os.environ, **env}, capture_output=True, check=False,
            )  # fmt: skip
            return None if probe.returncode == 0 else f"module {module!r} not found by {program}"
        if arg == "-c":
            return None
        if not arg.startswith("-"):
            return None if Path(arg).is_file() else f"script {arg!r} does not exist"
    return None


def start(
    trial: Trial,
    command: Sequence[str],
    env: Mapping[str, str],
    result_file: Path,
    logs: Path,
    warm: WarmStarter | None = None,
) -> Running:
    """Start the trial's process: forked from ``warm`` when given and ``command`` is the
    built-in trainer's, else a fresh process of ``command``."""
    result_file.unlink(missing_ok=True)
    stdout_path, stderr_path = logs / f"{trial.name}.log", logs / f"{trial.name}.stderr"
    # The log is appended to: it is the trial's curve, and an attempt resumed from a
    # checkpoint continues it (the curve reader drops an earlier attempt's points past
    # where the next resumed). stderr is this attempt's: a failure's message is its tail.
    stdout_path.touch()
    stderr_path.write_bytes(b"")
    args = builtin_args(command)
    if warm is not None and args is not None:
        try:
            forked = warm.start(args, {**os.environ, **env}, stdout_path, stderr_path)
            return Running(trial, forked, result_file, stderr_path, time.monotonic(), ())
        except WarmStartError:
            pass  # a fresh process does the same, only slower to start
    stdout = stdout_path.open("ab")
    stderr = stderr_path.open("ab")
    process: subprocess.Popen[bytes] = subprocess.Popen(
        list(command),
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,  # Ctrl-C reaches the runner only; it stops children itself
        preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
    )
    return Running(trial, process, result_file, stderr_path, time.monotonic(), (stdout, stderr))


def signal_trial(running: Running, signum: int) -> None:
    """Signal a running trial's whole process group (pruning's SIGTERM: the trainer saves
    and stops as on a preemption)."""
    if running.process.poll() is None:
        _signal(running.process, signum)


def _signal(process: TrialProcess, signum: int) -> None:
    """The trial's whole session (a launcher's ranks too); its process alone while a
    forked trial has not made its session yet."""
    with contextlib.suppress(ProcessLookupError):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            os.kill(process.pid, signum)


#: How long a trial is waited for after SIGKILL before the runner gives up on it.
KILL_WAIT_SECONDS = 5.0


def stop_all(running: Sequence[Running], grace: float = 5.0) -> None:
    """SIGTERM every trial, SIGKILL what is left after ``grace``. Never raises for a trial
    that will not be reaped (a forked trial whose warm process is gone is no child of
    ours): the runner's ``finally`` must end, and its results must still be written."""
    for r in running:
        if r.process.poll() is None:
            _signal(r.process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for r in running:
        try:
            r.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            _signal(r.process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.process.wait(KILL_WAIT_SECONDS)
        r.close()


def tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace").strip()
