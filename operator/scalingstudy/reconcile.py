"""The scheduling decision shared by every executor: which trials to start next,
and whether the study is done or has failed. Pure: observed state in, decision out."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from scalingstudy.plan import Trial
from scalingstudy.results import TrialRecord


@dataclass(frozen=True)
class Decision:
    start: tuple[Trial, ...]
    finished: bool
    failed_reason: str | None

    @property
    def failed(self) -> bool:
        return self.failed_reason is not None


def decide(
    planned: Sequence[Trial],
    records: Mapping[str, TrialRecord],
    active: Collection[str],
    parallelism: int,
    max_failed: int,
) -> Decision:
    """Start trials in plan order up to ``parallelism`` active ones; stop once more than
    ``max_failed`` have failed. Recorded trials are never started again."""
    planned_names = {t.name for t in planned}
    failures = [r for name, r in records.items() if name in planned_names and r.status == "Failed"]
    if len(failures) > max_failed:
        reasons = sorted({f.reason or "Failed" for f in failures})
        return Decision(
            (),
            True,
            f"{len(failures)} trials failed (maxFailedTrials is {max_failed}); "
            f"reasons: {', '.join(reasons)}; last: {failures[-1].trial}: "
            f"{(failures[-1].message or '').strip()[-300:]}",
        )
    waiting = [t for t in planned if t.name not in records and t.name not in active]
    room = max(parallelism - len([a for a in active if a in planned_names]), 0)
    done = not waiting and not any(a in planned_names for a in active)
    return Decision(tuple(waiting[:room]), done, None)
