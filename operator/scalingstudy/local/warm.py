"""Local trials of the built-in trainer forked from one warm process
(``scalingstudy_trainer.warm``) instead of each importing torch from cold.

A fresh trainer process spends about 4 s of CPU on imports before its first step; a
forked one starts in milliseconds and otherwise behaves the same (its own session,
environment, logs and exit status; SIGTERM when the runner dies). Only for the built-in
trainer, on Linux, without a GPU device (a CUDA driver does not survive a fork), and not
when the user asks for fresh processes (``scalingstudy run --cold-start``).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

#: How long the warm process may take to import torch and the trainer.
READY_SECONDS = 120.0
#: How often an orphaned trial (its warm process gone) is looked at while waited for.
ORPHAN_POLL_SECONDS = 0.05
PR_SET_PDEATHSIG = 1


class WarmStartError(RuntimeError):
    """The warm process is gone or refused a request: start the trial cold instead."""


def available() -> bool:
    """Whether trials of the built-in trainer can be forked here (Linux, no GPU driver,
    torch and the trainer installed)."""
    if importlib.util.find_spec("scalingstudy_trainer") is None:
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    from scalingstudy_trainer.preload import can_fork

    return can_fork()


class WarmProcess:
    """A forked trial, as much of ``subprocess.Popen`` as the runner uses."""

    def __init__(self, starter: WarmStarter, pid: int, request: int) -> None:
        self.starter = starter
        self.pid = pid
        #: The request it was forked for: its exit is looked up by that, not by the pid
        #: (the kernel gives a pid to a new process once the old one is reaped).
        self.request = request
        self.returncode: int | None = None
        #: The kernel's start time of the process: a later process given the same pid
        #: (once this one is gone) is not taken for it.
        self.birth = _start_time(pid)

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.starter.exit_status(self)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self.starter.exit_status(self, wait=True, timeout=timeout)
            if code is None:
                raise subprocess.TimeoutExpired(f"trial process {self.pid}", timeout or 0)
            self.returncode = code
        return self.returncode


class WarmStarter:
    """The warm process and what it reported: the pid of each request, each exit."""

    def __init__(self, log: Path | None = None, program: Sequence[str] | None = None) -> None:
        """``log``: where the warm process's own messages go (default: this stderr);
        ``program``: the warm process (default the trainer's; a test gives a scripted
        peer for faults it cannot produce for real, such as a pid used again)."""
        self.log = log.open("ab") if log is not None else None
        self.process = subprocess.Popen(
            list(program or [sys.executable, "-m", "scalingstudy_trainer.warm"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,  # Ctrl-C reaches the runner only
            preexec_fn=die_with_parent,
        )
        self.lock = threading.Condition()
        self.ready = False
        self.gone = False
        self.replies: dict[int, dict[str, Any]] = {}
        #: The request of each forked pid that has not ended, and the exit of each request
        #: not read yet: both pruned, so an entry never outlives its process.
        self.forked: dict[int, int] = {}
        self.exits: dict[int, int] = {}
        self.next_id = 0
        self.reader = threading.Thread(target=self._read, daemon=True, name="warm-start")
        self.reader.start()

    def _read(self) -> None:
        stdout: IO[bytes] | None = self.process.stdout
        assert stdout is not None
        for line in stdout:
            message = json.loads(line)
            with self.lock:
                if "ready" in message:
                    self.ready = True
                elif "id" in message:
                    self.replies[message["id"]] = message
                    if "pid" in message:  # its exit comes after this line, never before
                        self.forked[message["pid"]] = message["id"]
                elif (request := self.forked.pop(message["pid"], None)) is not None:
                    self.exits[request] = message["exit"]
                self.lock.notify_all()
        with self.lock:
            self.gone = True
            self.lock.notify_all()

    def start(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        stdout: Path,
        stderr: Path,
        cwd: Path | None = None,
    ) -> WarmProcess:
        """Fork a trial (``env`` is its whole environment; ``cwd`` defaults to this
        process's); WarmStartError if the warm process cannot (start it cold)."""
        with self.lock:
            if not self.lock.wait_for(lambda: self.ready or self.gone, READY_SECONDS):
                self.gone = True  # every later trial starts fresh at once
                self.process.kill()
                raise WarmStartError("the warm process did not finish its imports")
            if self.gone:
                raise WarmStartError("the warm process has ended")
            request_id, self.next_id = self.next_id, self.next_id + 1
        request = {"id": request_id, "args": list(args), "env": dict(env),
                   "cwd": str(cwd or Path.cwd()), "stdout": str(stdout.resolve()),
                   "stderr": str(stderr.resolve())}  # fmt: skip
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except OSError as exc:
            raise WarmStartError(f"the warm process has ended: {exc}") from exc
        with self.lock:
            self.lock.wait_for(lambda: request_id in self.replies or self.gone)
            reply = self.replies.pop(request_id, None)
        if reply is None or "pid" not in reply:
            raise WarmStartError((reply or {}).get("error", "the warm process has ended"))
        return WarmProcess(self, reply["pid"], request_id)

    def exit_status(
        self, trial: WarmProcess, wait: bool = False, timeout: float | None = None
    ) -> int | None:
        """A forked trial's exit status (None while it runs), read once: the entry is
        removed, so the table holds only trials that run or have not been looked at. If the
        warm process is gone its children were sent SIGTERM and no status will come: a
        trial then reads as killed by it (-15) once it is no longer running (a zombie no
        one reaps, or another process given its pid, is not it)."""
        with self.lock:
            if wait:
                self.lock.wait_for(lambda: trial.request in self.exits or self.gone, timeout)
            if trial.request in self.exits:
                return self.exits.pop(trial.request)
            if not self.gone:
                return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while _running(trial.pid, trial.birth):
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                return None
            time.sleep(ORPHAN_POLL_SECONDS)
        return -15

    def close(self) -> None:
        """End the warm process (its trials were stopped by the runner already)."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.log is not None:
            self.log.close()


def _stat(pid: int) -> tuple[str, int] | None:
    """The process's state letter and start time (clock ticks after boot) from
    /proc/<pid>/stat; None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _running(pid: int, birth: int | None) -> bool:
    """Whether the trial forked as ``pid`` (started at ``birth``) still runs: not a zombie
    (a trial orphaned under an init that does not reap stays one), not another process."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in "ZXx" and birth is not None and stat[1] == birth


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM when the runner dies, even by SIGKILL, so a killed
    run leaves no trainer behind (it would only be re-run and waste the CPU)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
