"""A finished trial's record (`TrialRecord`): one row of status.results, the local run's
record files and results.csv, from the executor that saw the trial end."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel

from scalingstudy.contract import REASON_BYTES, ResultFields, TrialResult, message_tail
from scalingstudy.planning.plan import Trial, trial_name
from scalingstudy_sdk.curve import Curve, thin


class TrialCoordinates(BaseModel):
    """Which trial: its name and where it sits in the grid."""

    model_config = ResultFields.model_config

    trial: str
    """Trial (and Job) name."""
    data_size: int
    """Training-subset size."""
    model_size: int
    """Model-size knob."""
    seed: int
    """Initialisation seed."""
    learning_rate: float | None = None
    """The trial's learning rate in a learning-rate sweep."""


class TrialRecord(ResultFields, TrialCoordinates):
    """One finished trial, from the executor that saw it end to status.results, the local
    run's record files and results.csv. ``loss`` is set exactly when it succeeded."""

    status: Literal["Succeeded", "Failed", "Pruned"]
    """Outcome. Pruned: stopped because it could not win its slot (docs/pruning.md);
    never retried, not a failure, left out of the fit."""
    duration_seconds: float | None = None
    """Wall time of the trial's last attempt."""
    earlier_seconds: float | None = None
    """Wall time its earlier attempts held their devices and left no result: admitted
    before a Kueue preemption (the Job's start time restarts when it resumes). Counted in
    the spend, with durationSeconds."""
    reason: str | None = None
    """Why a trial failed (exit code, OOMKilled, DeadlineExceeded, ...), or Pruned."""
    message: str | None = None
    """Tail of the failed trial's message, or why a pruned trial was stopped."""
    source: str | None = None
    """Where the result was read: termination-message (or file, locally), or prometheus
    when no termination message could be read."""
    verified: bool | None = None
    """False: the result came only from the Pushgateway, which anyone who can reach it may
    write to; true: the trial's own container reported it."""
    best_loss: float | None = None
    """A pruned trial's lowest validation loss before it was stopped (not a result: it
    never finished)."""
    pruned_at_step: int | None = None
    """The step of a pruned trial's last evaluation before it was stopped."""
    pruned_against: str | None = None
    """The competitor a pruned trial could not beat: while that trial is planned and has
    not failed the decision stands; if it fails or a spec edit drops it, the pruned trial
    is trained again (`scheduling.lapsed_prunes`)."""
    curve: list[list[float]] | None = None
    """A pruned trial's curve as at most 24 [step, validation loss] pairs (finite losses
    only), kept so that its curve outlives its pod; not in results.csv."""

    @classmethod
    def succeeded(
        cls,
        trial: Trial,
        result: TrialResult,
        duration: float | None,
        source: str | None = None,
        verified: bool = True,
    ) -> TrialRecord:
        measured = {f: getattr(result, f) for f in ResultFields.model_fields}
        return cls(
            **_coordinates(trial),
            status="Succeeded",
            duration_seconds=_seconds(duration),
            source=source,
            verified=verified,
            **measured,
        )

    @classmethod
    def failed(cls, trial: Trial, reason: str, message: str, duration: float | None) -> TrialRecord:
        return cls(
            **_coordinates(trial),
            status="Failed",
            reason=reason[:REASON_BYTES],
            message=message_tail(message),
            duration_seconds=_seconds(duration),
        )

    @classmethod
    def pruned(
        cls,
        trial: Trial,
        step: int,
        message: str,
        curve: Curve,
        duration: float | None,
        against: str | None = None,
    ) -> TrialRecord:
        """A trial stopped by pruning: no loss (it never finished), its best evaluation
        and where it stopped, why, and a compact curve."""
        return cls(
            **_coordinates(trial),
            status="Pruned",
            reason="Pruned",
            message=message_tail(message),
            best_loss=curve.best(),
            pruned_at_step=step,
            pruned_against=against,
            curve=compact_curve(curve),
            duration_seconds=_seconds(duration),
        )

    @property
    def seconds_used(self) -> float:
        """Wall time of all its attempts (0 when unknown): what the spend counts."""
        return (self.duration_seconds or 0.0) + (self.earlier_seconds or 0.0)

    def to_json(self) -> dict[str, Any]:
        """camelCase, without empty fields: the shape of a status.results row."""
        return self.model_dump(by_alias=True, exclude_none=True)

    @classmethod
    def from_json(cls, raw: Any) -> TrialRecord:
        return cls.model_validate(raw)

    def csv_row(self) -> dict[str, Any]:
        return {c: "" if getattr(self, c) is None else getattr(self, c) for c in CSV_COLUMNS}


#: The results CSV (the fit CSV of DESIGN §5 plus columns): coordinates, the reported
#: numbers and the duration; outcome and failure details stay in the records.
CSV_COLUMNS = tuple(
    f
    for f in TrialRecord.model_fields
    if f not in ("status", "reason", "message", "source", "verified")
    # A pruned trial's fields: results.csv lists succeeded trials only (curves.csv and the
    # records keep pruned ones).
    and f not in ("best_loss", "pruned_at_step", "pruned_against", "curve")
    and f != "earlier_seconds"  # the spend's, in the records and status
)

#: Points of a pruned trial's curve kept in its record (status.results stays small).
RECORD_CURVE_POINTS = 24


def compact_curve(curve: Curve, limit: int = RECORD_CURVE_POINTS) -> list[list[float]]:
    """At most ``limit`` [step, validation loss] pairs of ``curve``, thinned as the SDK
    thins (first, last, lowest, spread), finite losses only (JSON has no NaN)."""
    finite = [
        p
        for p in curve.points
        if p.validation_loss is not None and math.isfinite(p.validation_loss)
    ]
    return [[p.step, p.validation_loss or 0.0] for p in thin(finite, limit)]


def _coordinates(trial: Trial) -> dict[str, Any]:
    return {
        "trial": trial.name,
        "data_size": trial.data_size,
        "model_size": trial.model_size,
        "seed": trial.seed,
        "learning_rate": trial.learning_rate,
    }


def _seconds(duration: float | None) -> float | None:
    return None if duration is None else round(duration, 3)


def with_current_names(study: str, records: Iterable[TrialRecord]) -> dict[str, TrialRecord]:
    """The records keyed by the names their values give today (`plan.trial_name`): a
    record written under an older naming (a sweep's rate by its position, a study name
    starting with a digit) is the same trial, so an upgrade retrains nothing that
    finished. Where two records claim one name, the one already under it wins."""
    out: dict[str, TrialRecord] = {}
    renamed: list[TrialRecord] = []
    for r in records:
        name = trial_name(study, r.data_size, r.model_size, r.seed, r.learning_rate)
        if name == r.trial:
            out[name] = r
        else:
            renamed.append(r.model_copy(update={"trial": name}))
    for r in renamed:
        out.setdefault(r.trial, r)
    return out
