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
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

#: How long the warm process may take to import torch and the trainer.
READY_SECONDS = 120.0
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

    def __init__(self, starter: WarmStarter, pid: int) -> None:
        self.starter = starter
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.starter.exit_status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self.starter.exit_status(self.pid, wait=True, timeout=timeout)
            if code is None:
                raise subprocess.TimeoutExpired(f"trial process {self.pid}", timeout or 0)
            self.returncode = code
        return self.returncode


class WarmStarter:
    """The warm process and what it reported: the pid of each request, each exit."""

    def __init__(self, log: Path | None = None) -> None:
        """``log``: where the warm process's own messages go (default: this stderr)."""
        self.log = log.open("ab") if log is not None else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scalingstudy_trainer.warm"],
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
                else:
                    self.exits[message["pid"]] = message["exit"]
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
        return WarmProcess(self, reply["pid"])

    def exit_status(self, pid: int, wait: bool = False, timeout: float | None = None) -> int | None:
        """A forked trial's exit status (None while it runs). If the warm process is gone
        its children were sent SIGTERM: a trial with no status then reads as killed by it."""
        with self.lock:
            if wait:
                self.lock.wait_for(lambda: pid in self.exits or self.gone, timeout)
            if pid in self.exits:
                return self.exits[pid]
            return -15 if self.gone and not _alive(pid) else None

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM when the runner dies, even by SIGKILL, so a killed
    run leaves no trainer behind (it would only be re-run and waste the CPU)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
