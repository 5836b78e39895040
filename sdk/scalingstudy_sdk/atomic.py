"""Files replaced whole or not at all: shared by every trainer's result file (the SDK),
the built-in trainer's checkpoints and the local runner's store. Standard library only."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    """The process's umask: from /proc on Linux (os.umask can only read it by setting it,
    which would race with other threads), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Let ``write`` fill a temporary file beside ``path``, sync it, rename it into place:
    a reader (or a restart after a crash) sees the old file or the whole new one.

    The file gets the mode a plain ``open`` would give (0666 less the umask), not
    mkstemp's private 0600: results are meant to be read by the user's other tools."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    write_atomic_with(path, lambda handle: handle.write(text.encode("utf-8")))
