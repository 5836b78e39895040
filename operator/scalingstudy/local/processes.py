"""Trials as child processes: start one, notice when it ends, stop them all."""

from __future__ import annotations

import contextlib
import ctypes
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
from typing import IO

from scalingstudy.plan import Trial

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM when the runner dies, even by SIGKILL, so a killed
    run leaves no trainer behind (it would only be re-run and waste the CPU)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Running:
    trial: Trial
    process: subprocess.Popen[bytes]
    result_file: Path
    stderr_path: Path
    started: float
    handles: tuple[IO[bytes], IO[bytes]]

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
) -> Running:
    result_file.unlink(missing_ok=True)
    stdout = (logs / f"{trial.name}.log").open("wb")
    stderr_path = logs / f"{trial.name}.stderr"
    stderr = stderr_path.open("wb")
    process = subprocess.Popen(
        list(command),
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,  # Ctrl-C reaches the runner only; it stops children itself
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    return Running(trial, process, result_file, stderr_path, time.monotonic(), (stdout, stderr))


def stop_all(running: Sequence[Running], grace: float = 5.0) -> None:
    for r in running:
        if r.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(r.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for r in running:
        try:
            r.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(r.process.pid, signal.SIGKILL)
            r.process.wait()
        r.close()


def tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace").strip()
