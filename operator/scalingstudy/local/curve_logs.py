"""A local trial's curve from its own log (``logs/<trial>.log``, its stdout): followed while
it runs, reading only what was appended since the last look, and read whole for trials
of an earlier run in the same folder.

The log is the one channel only the trial writes, so its curve may drive pruning; the
runner looks at most about once per second, never re-reading a whole file."""

from __future__ import annotations

from pathlib import Path

from scalingstudy_sdk.curve import Curve, CurveReader

#: A line longer than this is no evaluation (a trainer's stray output without newlines):
#: it is skipped rather than buffered whole.
MAX_LINE_BYTES = 1 << 16
#: At most this much of a log is read per look (the rest at the next one).
READ_BYTES = 1 << 22


class LogFollower:
    """The curve of a growing log: each ``poll`` reads the bytes appended since the last
    and returns the curve so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self.partial = b""
        self.skipping = False
        self.reader = CurveReader()
        self.cached: Curve | None = None

    def poll(self) -> Curve:
        try:
            if self.path.stat().st_size < self.offset:
                self._reset()  # truncated: the trial started anew
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read(READ_BYTES)
        except OSError:
            return self._curve()
        if data:
            self.offset += len(data)
            self._feed(data)
            self.cached = None
        return self._curve()

    def _curve(self) -> Curve:
        """The curve so far, thinned once per change (not at every look)."""
        if self.cached is None:
            self.cached = self.reader.curve()
        return self.cached

    def _feed(self, data: bytes) -> None:
        *lines, self.partial = (self.partial + data).split(b"\n")
        for raw in lines:
            if self.skipping:  # the end of an over-long line
                self.skipping = False
                continue
            self.reader.add(raw.decode("utf-8", errors="replace"))
        if len(self.partial) > MAX_LINE_BYTES:
            self.partial, self.skipping = b"", True

    def finish(self) -> Curve:
        """The curve once the trial ended: everything read, a last line without its
        newline included."""
        while True:
            before = self.offset
            self.poll()
            if self.offset == before:
                break
        if self.partial and not self.skipping:
            self.reader.add(self.partial.decode("utf-8", errors="replace"))
            self.partial, self.cached = b"", None
        return self._curve()


def read_log_curve(path: Path) -> Curve | None:
    """The curve of a finished trial's log; None when it has no log."""
    if not path.is_file():
        return None
    return LogFollower(path).finish()
