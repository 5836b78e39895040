"""What a trial process that ended becomes: its record, from its result file, its exit,
or (a trial the runner stopped by pruning) the pruning decision."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from scalingstudy.contract import REASON_BAD_RESULT, ResultError, exit_reason, parse_result
from scalingstudy.local import processes
from scalingstudy.status import TrialRecord
from scalingstudy_sdk.curve import Curve

if TYPE_CHECKING:
    from scalingstudy.pruning import Prune


def ended(
    running: processes.Running, metric: str, prune: Prune | None = None,
    curve: Curve | None = None,
) -> TrialRecord:  # fmt: skip
    """Turn an ended process into a record: its result file, or why it failed, or (a
    trial the runner stopped by pruning that did not finish first) Pruned."""
    running.close()
    duration = time.monotonic() - running.started
    code = running.process.wait()
    if prune is not None and running.signalled:
        # Stopped by its SIGTERM: a result written on the way out is a partial run's.
        return TrialRecord.pruned(running.trial, prune.step, prune.message, curve or Curve(),
                                  duration, prune.against)  # fmt: skip
    if code == 0:
        try:
            text = running.result_file.read_text(encoding="utf-8")
            return TrialRecord.succeeded(running.trial, parse_result(text, metric), duration)
        except FileNotFoundError:
            if prune is None:
                return TrialRecord.failed(
                    running.trial, REASON_BAD_RESULT,
                    "trainer exited 0 but wrote no result file", duration,
                )  # fmt: skip
        except ResultError as exc:
            if prune is None:
                return TrialRecord.failed(running.trial, REASON_BAD_RESULT, str(exc), duration)
    if prune is not None:
        return TrialRecord.pruned(running.trial, prune.step, prune.message, curve or Curve(),
                                  duration, prune.against)  # fmt: skip
    return TrialRecord.failed(
        running.trial, exit_reason(code), processes.tail(running.stderr_path), duration
    )
