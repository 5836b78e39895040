"""Results of a local run on disk, written so that a killed run loses nothing.

Each finished trial is one small JSON file, written to a temporary name and
renamed into place: a reader sees either the whole record or none. The study's
result-relevant settings are kept beside them so a resume with a changed task
or training setup is refused instead of mixing incompatible results.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scalingstudy.status import DesignStatus, TrialRecord
from scalingstudy_sdk.atomic import write_atomic

_log = logging.getLogger(__name__)


class StoreError(Exception):
    """An output directory that cannot be used for this study."""


#: The lock file of the run writing to a directory (its pid and start time inside).
LOCK_FILE = "run.lock"
#: Changed fields named in a refusal before "and N more".
SHOWN_CHANGES = 6


def _setup(study: str, identity: dict[str, Any]) -> dict[str, Any]:
    return {"study": study, "identity": identity}


def _holder(fd: int) -> str:
    """Who holds the lock, as its lock file says."""
    try:
        held = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {held['pid']}, started {held['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown: it has just started"


def _flat(value: Any, path: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        for key in value:
            _flat(value[key], f"{path}.{key}", out)
    else:
        out[path] = value
    return out


def setup_changes(found: Any, wanted: dict[str, Any]) -> list[str]:
    """The fields that differ between a directory's recorded setup and this study's, as
    ``spec.training.learningRate: 0.003 -> 0.01`` (``metadata.name`` for the study)."""

    def fields(setup: Any) -> dict[str, Any]:
        if not isinstance(setup, Mapping):
            return {"study.json": setup}
        return {**_flat(setup.get("identity"), "spec", {}), "metadata.name": setup.get("study")}

    old, new = fields(found), fields(wanted)
    unset = object()
    changes = [
        f"{key}: {_shown(old.get(key, unset), unset)} -> {_shown(new.get(key, unset), unset)}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, unset) != new.get(key, unset)
    ]
    more = len(changes) - SHOWN_CHANGES
    return changes[:SHOWN_CHANGES] + ([f"and {more} more"] if more > 0 else [])


def _shown(value: Any, unset: object) -> str:
    return "(unset)" if value is unset else json.dumps(value)


class ResultStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.trials_dir = root / "trials"
        self.logs_dir = root / "logs"
        self.work_dir = root / "work"

    def open(self, study: str, identity: dict[str, Any]) -> None:
        """Create the directory, or check that it holds results of the same study setup."""
        for d in (self.trials_dir, self.logs_dir, self.work_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.check(study, identity):
            write_atomic(self.marker, json.dumps(_setup(study, identity), indent=2,
                                                 sort_keys=True))  # fmt: skip

    @property
    def marker(self) -> Path:
        return self.root / "study.json"

    def check(self, study: str, identity: dict[str, Any]) -> bool:
        """Whether the directory is new to a study (no marker yet); StoreError, naming every
        changed field, if it holds results of a different setup. Reads only: ``plan``
        refuses exactly what ``run`` will."""
        if not self.marker.exists():
            return True
        try:
            found = json.loads(self.marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{self.marker}: unreadable ({exc}); use another --out") from None
        changes = setup_changes(found, _setup(study, identity))
        if changes:
            raise StoreError(
                f"{self.root} holds results of a different study setup ({'; '.join(changes)}); "
                "use another --out, or delete the directory to start over"
            )
        return False

    def in_use(self) -> str | None:
        """The refusal ``lock`` would give now (None: free), without keeping the lock: a
        caller with slow work before ``run_study`` (a preflight check) refuses at once."""
        if not (self.root / LOCK_FILE).exists():
            return None
        try:
            with self.lock():
                return None
        except StoreError as exc:
            return str(exc)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """This run alone writes here: a second run is refused at once (StoreError naming
        the other run's pid and start time). The lock dies with its process, so a killed
        run leaves nothing to clean up."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{self.root} is in use by another scalingstudy run "
                                 f"({_holder(fd)}); wait for it to end, or use another "
                                 "--out") from None  # fmt: skip
            os.ftruncate(fd, 0)
            started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
            os.write(fd, json.dumps({"pid": os.getpid(), "started": started}).encode())
            yield
        finally:
            os.close(fd)  # releases the lock

    def record(self, rec: TrialRecord) -> None:
        write_atomic(self.trials_dir / f"{rec.trial}.json", json.dumps(rec.to_json(), indent=1))

    def cancelled_before(self) -> float:
        """The seconds of the runs earlier runs on this folder stopped as the design no
        longer planned them (their design.json; 0 where there is none or it is unread)."""
        try:
            earlier = DesignStatus.model_validate_json((self.root / "design.json").read_bytes())
        except (OSError, ValueError):
            return 0.0
        return earlier.cancelled_seconds + sum(c.seconds for c in earlier.cancelled)

    def forget(self, trial: str) -> None:
        (self.trials_dir / f"{trial}.json").unlink(missing_ok=True)

    def load(self, set_aside: bool = True) -> dict[str, TrialRecord]:
        """The trial records on disk; ``set_aside=False`` reads only (a dry run) and skips
        a damaged record instead of renaming it."""
        records: dict[str, TrialRecord] = {}
        if not self.trials_dir.is_dir():
            return records
        for path in sorted(self.trials_dir.glob("*.json")):
            try:
                rec = TrialRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:  # JSON and pydantic errors too
                if set_aside:
                    self._set_aside(path, exc)
                continue
            records[rec.trial] = rec
        return records

    @staticmethod
    def _set_aside(path: Path, exc: Exception) -> None:
        """A damaged or foreign record: say so, keep it for a look as ``*.bad``, and let
        its trial run again (it no longer counts as done)."""
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        bad = path.with_suffix(".json.bad")
        try:
            path.replace(bad)
        except OSError:
            bad = path
        _log.warning("%s: not a trial record (%s); set aside as %s, trial runs again",
                     path, reason, bad.name)  # fmt: skip
