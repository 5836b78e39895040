"""Finished trials as records, and what the fit makes of them: shared by the local
runner (records on disk) and the operator (records in status.results)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from scalingstudy.contract import TrialResult
from scalingstudy.fitting import FitOptions, Point
from scalingstudy.plan import Trial
from scalingstudy.spec import ScalingStudySpec

Status = Literal["Succeeded", "Failed"]

CSV_COLUMNS = (
    "trial",
    "data_size",
    "model_size",
    "seed",
    "loss",
    "parameters",
    "train_loss",
    "steps",
    "samples_seen",
    "duration_seconds",
)


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial; ``loss`` is set exactly when it succeeded."""

    trial: str
    data_size: int
    model_size: int
    seed: int
    status: Status
    loss: float | None = None
    parameters: float | None = None
    train_loss: float | None = None
    steps: int | None = None
    samples_seen: int | None = None
    duration_seconds: float | None = None
    reason: str | None = None
    message: str | None = None
    source: str | None = None  # where the result was read: prometheus, termination-message, file

    @classmethod
    def succeeded(
        cls,
        trial: Trial,
        result: TrialResult,
        duration: float | None,
        source: str | None = None,
    ) -> TrialRecord:
        return cls(
            trial=trial.name,
            data_size=trial.data_size,
            model_size=trial.model_size,
            seed=trial.seed,
            status="Succeeded",
            loss=result.loss,
            parameters=result.parameters,
            train_loss=result.train_loss,
            steps=result.steps,
            samples_seen=result.samples_seen,
            duration_seconds=None if duration is None else round(duration, 3),
            source=source,
        )

    @classmethod
    def failed(cls, trial: Trial, reason: str, message: str, duration: float | None) -> TrialRecord:
        return cls(
            trial=trial.name,
            data_size=trial.data_size,
            model_size=trial.model_size,
            seed=trial.seed,
            status="Failed",
            reason=reason,
            message=message[-2000:],
            duration_seconds=None if duration is None else round(duration, 3),
        )

    def to_json(self) -> dict[str, Any]:
        """camelCase, without empty fields: the shape of a status.results row."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                head, *rest = f.name.split("_")
                out[head + "".join(p.title() for p in rest)] = value
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TrialRecord:
        names = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in raw.items():
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
            if snake in names:
                kwargs[snake] = value
        return cls(**kwargs)

    def csv_row(self) -> dict[str, Any]:
        row = asdict(self)
        return {c: "" if row.get(c) is None else row[c] for c in CSV_COLUMNS}


def points_of(records: Iterable[TrialRecord]) -> list[Point]:
    return [
        Point(
            data_size=float(r.data_size),
            loss=r.loss,
            model_size=float(r.model_size),
            seed=str(r.seed),
            parameters=r.parameters,
        )
        for r in records
        if r.status == "Succeeded" and r.loss is not None
    ]


def fit_options(spec: ScalingStudySpec) -> FitOptions:
    """The study's fit settings; without predictAt, predict at 10x the largest data size.
    The joint fit in model size and data needs a grid of at least 3 x 3."""
    predict_at = spec.fit.predict_at or [10 * spec.data_sizes.sizes()[-1]]
    return FitOptions(
        form=spec.fit.form,
        confidence=spec.fit.confidence,
        bootstrap=spec.fit.bootstrap,
        predict_at=tuple(float(x) for x in predict_at),
        target_loss=spec.fit.target_loss,
        joint=len(spec.model_sizes.sizes()) >= 3,
    )


def fittable(records: Iterable[TrialRecord]) -> bool:
    """At least 3 data sizes have a succeeded trial."""
    return len({r.data_size for r in records if r.status == "Succeeded"}) >= 3
