"""Results of a local run on disk, written so that a killed run loses nothing.

Each finished trial is one small JSON file, written to a temporary name and
renamed into place: a reader sees either the whole record or none. The study's
result-relevant settings are kept beside them so a resume with a changed task
or training setup is refused instead of mixing incompatible results.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from scalingstudy.status import TrialRecord
from scalingstudy_sdk.atomic import write_atomic

_log = logging.getLogger(__name__)


class StoreError(Exception):
    """An output directory that cannot be used for this study."""


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
        marker = self.root / "study.json"
        wanted = {"study": study, "identity": identity}
        if marker.exists():
            try:
                found = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise StoreError(f"{marker}: unreadable ({exc}); use another --out") from None
            if found != wanted:
                raise StoreError(
                    f"{self.root} holds results of a different study setup (name, task, training "
                    "or metric changed); use another --out, or delete the directory to start over"
                )
            return
        write_atomic(marker, json.dumps(wanted, indent=2, sort_keys=True))

    def record(self, rec: TrialRecord) -> None:
        write_atomic(self.trials_dir / f"{rec.trial}.json", json.dumps(rec.to_json(), indent=1))

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
