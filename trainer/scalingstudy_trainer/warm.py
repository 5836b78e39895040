"""A warm start for local trials (``python -m scalingstudy_trainer.warm``): one process
imports torch and the trainer once, then forks a trial process per request.

A small trial on a CPU trains for a second or two, but a fresh Python spends about 4 s
of CPU importing torch (and torch._dynamo, which the optimisers load on their first
step) before it starts; a local study of a hundred such trials spends most of its time
there. A forked child starts in milliseconds and is otherwise the process
``python -m scalingstudy_trainer`` would be: its own session, the trial's environment
and working directory, stdin from /dev/null, stdout and stderr to the trial's logs, the
trainer's exit status. Only the local runner uses it (``scalingstudy.local.warm``), and
only on a machine without a GPU: nothing here touches CUDA, but a driver initialised
before a fork is unusable in the child, so a GPU machine keeps fresh processes.

Protocol, one JSON object per line: the runner writes ``{"id", "args", "env", "cwd",
"stdout", "stderr"}`` on stdin; this process answers ``{"ready": true}`` once (after its
imports), ``{"id", "pid"}`` (or ``{"id", "error"}``) per request, and ``{"pid", "exit"}``
when a child ends (exit as ``subprocess`` reports it: negative for a signal). At the
end of stdin it exits, and its children get SIGTERM (they save and stop, as when a
runner dies).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import random
import selectors
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from scalingstudy_trainer.preload import preload

PR_SET_PDEATHSIG = 1
MAIN = str(Path(__file__).with_name("__main__.py"))


def _send(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _die_with(parent: int) -> None:
    """SIGTERM when the warm process dies (the runner is gone): as a fresh trial does
    when its runner dies."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _redirect(request: dict[str, Any]) -> None:
    """stdin, stdout and stderr as the runner's Popen would give them; nothing else
    of this process stays open."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["stdout"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for fd, target in ((devnull, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
    open_fds = [int(entry.name) for entry in Path("/proc/self/fd").iterdir()]
    for fd in open_fds:  # not closerange up to SC_OPEN_MAX: that may be 2**30
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1,  # noqa: SIM115
                      closefd=False)  # fmt: skip


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _trial(request: dict[str, Any], parent: int) -> int:
    """The forked child: become the trial's process, run the trainer, return its status."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _die_with(parent)
    _redirect(request)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = [MAIN, *request["args"]]
    random.seed()
    atexit._clear()  # this process's handlers are its own; the trial's run at its end
    try:
        from scalingstudy_trainer.main import main

        code = main()
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    return code


def _fork(request: dict[str, Any], parent: int) -> None:
    try:
        pid = os.fork()
    except OSError as exc:
        _send({"id": request["id"], "error": f"fork failed: {exc}"})
        return
    if pid == 0:  # pragma: no cover - the child's coverage is its trial's
        code = 1
        try:
            code = _trial(request, parent)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code & 0xFF)
    _send({"id": request["id"], "pid": pid})


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send({"pid": pid, "exit": os.waitstatus_to_exitcode(status)})


def serve() -> None:
    """Fork a trial per request line until stdin ends."""
    parent = os.getpid()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    pending = b""
    _send({"ready": True})
    while True:
        for key, _ in selector.select():
            if key.fd == wake_r:
                os.read(wake_r, 4096)
                continue
            data = os.read(0, 1 << 16)
            if not data:
                return
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    _fork(json.loads(line), parent)
        _reap()


def main() -> int:
    # The protocol owns stdout; anything imported code prints goes to stderr.
    protocol = os.dup(1)
    os.dup2(2, 1)
    preload()
    os.dup2(protocol, 1)
    os.close(protocol)
    serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
