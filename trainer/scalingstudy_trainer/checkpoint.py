"""Checkpoints that make a Job retry lose no work.

Kubernetes stops a pod with SIGTERM (eviction, preemption, node drain) and kills it
after the grace period. The trainer saves its whole state at the next step boundary
and exits with EXIT_PREEMPTED; the retry of the same trial finds the checkpoint in
SCALINGSTUDY_CHECKPOINT_DIR (a volume that outlives the pod) and carries on from
that step. A finished trial leaves its result there too, so a pod that dies between
finishing and reporting is not trained again. Every file carries the trial's
identity: a checkpoint of a different trial, task or training setting is ignored.

torch loads only when a checkpoint is saved or read: the entry point installs its
SIGTERM handler and refuses a bad configuration before paying seconds for torch.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from scalingstudy_sdk.atomic import write_atomic, write_atomic_with

STATE_FILE = "checkpoint.pt"
RESULT_FILE = "result.json"
#: Besides on SIGTERM, save at an evaluation when this long has passed since the last
#: save: a SIGKILL or a lost node then costs at most this much training.
SAVE_INTERVAL_SECONDS = 600.0


class Preempted(Exception):  # noqa: N818 (a signal, not an error)
    """SIGTERM arrived; the state is saved (when there is somewhere to save it)."""


class StopSignal:
    """Turns SIGTERM (and SIGINT) into a flag the loop polls between steps, so a
    checkpoint is never taken in the middle of an optimiser update."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def install(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None


class Checkpoints:
    """The trial's checkpoint folder; a no-op when the trial has none."""

    def __init__(self, directory: str, identity: Mapping[str, Any]) -> None:
        self.directory = Path(directory) if directory else None
        self.identity = json.loads(json.dumps(dict(identity), sort_keys=True))
        self.saved_at = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def save(self, state: dict[str, Any]) -> bool:
        if self.directory is None:
            return False
        import torch

        write_atomic_with(
            self.directory / STATE_FILE,
            lambda handle: torch.save({"identity": self.identity, **state}, handle),
        )
        self.saved_at = time.monotonic()
        return True

    def due(self) -> bool:
        return self.enabled and time.monotonic() - self.saved_at >= SAVE_INTERVAL_SECONDS

    def load(self) -> tuple[dict[str, Any] | None, str]:
        """The saved state of this very trial, or None and why not."""
        if self.directory is None or not (self.directory / STATE_FILE).exists():
            return None, "no checkpoint"
        import torch

        try:
            state: dict[str, Any] = torch.load(
                self.directory / STATE_FILE, map_location="cpu", weights_only=True
            )
        except Exception as exc:  # a torn or foreign file must not fail the trial
            return None, f"unreadable checkpoint ({type(exc).__name__}: {exc})"
        if state.get("identity") != self.identity:
            return None, "checkpoint of a different trial or setting"
        return state, "resumed"

    def save_result(self, result: Mapping[str, Any]) -> None:
        if self.directory is None:
            return
        text = json.dumps({"identity": self.identity, "result": dict(result)}, sort_keys=True)
        write_atomic(self.directory / RESULT_FILE, text)
        (self.directory / STATE_FILE).unlink(missing_ok=True)

    def load_result(self) -> dict[str, Any] | None:
        if self.directory is None:
            return None
        try:
            saved = json.loads((self.directory / RESULT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or saved.get("identity") != self.identity:
            return None
        result = saved.get("result")
        return result if isinstance(result, dict) else None
