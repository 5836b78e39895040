"""The status the operator writes (its schema is part of the CRD; dashboards rely on names)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from scalingstudy.fitting.report import (
    ComputeOptimalReport,
    DataForTarget,
    ExtrapolationReport,
    FitReport,
    JointLawReport,
    LearningCurve,
    ModelSizeLaw,
    Prediction,
)
from scalingstudy.records import CSV_COLUMNS as CSV_COLUMNS
from scalingstudy.records import TrialCoordinates as TrialCoordinates
from scalingstudy.records import TrialRecord as TrialRecord

Phase = Literal["Pending", "Running", "Fitting", "Succeeded", "Failed"]
log = logging.getLogger("scalingstudy.status")


class _Status(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, use_attribute_docstrings=True
    )


class Condition(_Status):
    """A Kubernetes-style condition (Complete, Failed, Progressing, SpecValid)."""

    type: str
    """Condition type."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str | None = None
    """CamelCase reason for the last transition."""
    message: str | None = None
    """Human-readable details."""
    last_transition_time: str | None = None
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The spec generation the condition was computed from."""


class TrialCounts(_Status):
    """Trials by state."""

    total: int = 0
    """Trials in the plan."""
    pending: int = 0
    """Not started yet (no Job)."""
    queued: int = 0
    """Job created and waiting for admission (suspended: Kueue has not admitted it yet,
    or preempted it)."""
    running: int = 0
    """Job active (admitted)."""
    succeeded: int = 0
    """Finished with a recorded result."""
    failed: int = 0
    """Finished without a result."""
    pruned: int = 0
    """Stopped early by design.pruning: it could not win its slot (not a failure)."""


class FitStatus(_Status):
    """The fit report's status view (camelCase); refitted as results arrive."""

    final: bool = False
    """True once every trial has finished."""
    based_on_results: int | None = None
    """How many succeeded trials the fit used."""
    settings: str | None = None
    """A digest of the spec's fit settings the fit was made with: a fit of other settings
    no longer describes the spec and is made again."""
    learning_curve: LearningCurve | None = None
    """Learning-curve fit."""
    model_size: ModelSizeLaw | None = None
    """Model-size fit."""
    predictions: list[Prediction] = Field(default_factory=list)
    """Loss predicted at larger data sizes, with backtest-calibrated prediction intervals."""
    extrapolation: ExtrapolationReport | None = None
    """How the prediction intervals were made: the forms' backtest errors, the error model."""
    data_for_target: DataForTarget | None = None
    """Data size needed for spec.fit.targetLoss."""
    joint: JointLawReport | None = None
    """Joint fit of loss in model size and data, when the grid allows."""
    compute_optimal: ComputeOptimalReport | None = None
    """IsoFLOP studies: the compute-optimal model size per budget and its exponents."""
    warnings: list[str] = Field(default_factory=list)
    """Caveats of the fit."""

    @classmethod
    def of(
        cls, report: FitReport, final: bool, based_on_results: int, settings: str | None = None
    ) -> FitStatus:
        """The report's parts a study's reader needs (the trials are in status.results),
        every number to 4 significant digits (`kubectl get` columns stay narrow)."""
        parts = report.model_dump(
            include={
                "learning_curve", "model_size", "predictions", "extrapolation",
                "data_for_target", "joint", "compute_optimal", "warnings",
            },
            exclude_unset=True,
        )  # fmt: skip
        return cls.model_validate(
            {
                "final": final,
                "based_on_results": based_on_results,
                "settings": settings,
                **_rounded(parts),
            }
        )


class StageFit(_Status):
    """What a fit of the results up to one data size says, for the adaptive design: kept
    in status so a restarted operator does not refit (a refit would say the same: the fit
    is a function of the results)."""

    data_size: int
    """The largest data size of the results fitted (every trial up to it had finished)."""
    results: int
    """Succeeded results fitted."""
    beta: float | None = None
    """beta_g."""
    beta_interval_width: float | None = None
    """Width of the beta_g confidence interval."""
    prediction_relative_width: float | None = None
    """Width of the prediction interval at the first prediction, over the predicted loss."""
    size_alpha: float | None = None
    """Best parameter count = sizeAlpha * dataSize ** sizeBeta (the model-size law)."""
    size_beta: float | None = None
    """beta_p of that fit."""
    largest_loss: float | None = None
    """The loss it predicts at the largest listed data size."""
    largest_relative_width: float | None = None
    """Width of that prediction's interval over the predicted loss."""

    @classmethod
    def of(cls, report: FitReport, data_size: int, results: int) -> StageFit:
        """``report`` predicts at the largest listed data size first, then at the first
        predictAt (`results.stage_options`)."""
        lc, ms = report.learning_curve, report.model_size
        width = None  # an open interval has no width: no stop rule can be met by it
        if lc is not None and lc.beta_interval and None not in lc.beta_interval:
            width = lc.beta_interval[1] - lc.beta_interval[0]  # type: ignore[operator]
        largest, first = [*report.predictions, None, None][:2]
        return cls(
            data_size=data_size,
            results=results,
            beta=None if lc is None else lc.beta,
            beta_interval_width=width,
            prediction_relative_width=_relative_width(first),
            size_alpha=None if ms is None else ms.alpha,
            size_beta=None if ms is None else ms.beta,
            largest_loss=None if largest is None else largest.loss,
            largest_relative_width=_relative_width(largest),
        )


def _relative_width(p: Prediction | None) -> float | None:
    """A prediction interval's width over the predicted loss (None when an end is open)."""
    if p is None or not p.interval or None in p.interval or p.loss <= 0:
        return None
    return (p.interval[1] - p.interval[0]) / p.loss  # type: ignore[operator]


class StageWindow(_Status):
    """The model sizes an adaptive study trains at one data size."""

    data_size: int
    """Data size."""
    model_sizes: list[int]
    """Model sizes planned there."""


StopReason = Literal["TargetReached", "GridShareSpent", "BudgetSpent", "AllDataSizes"]
#: The stop reasons that end a design before it has trained every data size it lists.
EARLY_STOPS: frozenset[StopReason] = frozenset(
    r for r in get_args(StopReason) if r != "AllDataSizes"
)


class LearningRateChoice(_Status):
    """The learning rate that won at one (data size, model size) of a sweep."""

    data_size: int
    """Data size."""
    model_size: int
    """Model size."""
    learning_rate: float
    """The best learning rate there (lowest mean loss over seeds)."""
    at_edge: bool
    """It is the smallest or largest tried: the optimum may lie beyond the sweep."""


class CancelledRun(_Status):
    """A trial's Job deleted while it ran because the plan no longer holds the trial (a
    spec edit dropped its value, the design stopped it): its time was spent all the same."""

    trial: str
    """Trial (and Job) name."""
    job_uid: str
    """The Job's uid: each run counts once, whatever passes or restarts see it again."""
    seconds: float
    """Wall time from the Job's start until the operator deleted it, and what Kueue
    admitted it before a preemption; or, for a pruned trial trained again (its rival
    failed or left the plan), the time its pruned run used."""


class DesignStatus(_Status):
    """What the study's design chose and spent, against the full grid."""

    strategy: Literal["grid", "adaptive", "isoflop"]
    """grid, adaptive or isoflop."""
    trials_started: int
    """Trials started (finished or running)."""
    grid_trials: int
    """Trials of the full grid of listed sizes."""
    trials_skipped: int
    """Grid trials not started."""
    gpu_seconds: float
    """GPU-seconds of finished trials (duration times the GPUs of all their pods); 0 for a
    study whose trials request no GPUs (see deviceSeconds)."""
    device: Literal["gpu", "cpu"] = "gpu"
    """What deviceSeconds and the budget count: gpu when the trials request GPUs
    (nvidia.com/gpu), else cpu (the cpu each pod requests, else its limit, else 1)."""
    device_seconds: float = 0.0
    """Device-seconds of finished trials (every attempt: also the time admitted before a
    Kueue preemption) and of cancelled runs: wall time times the devices of all their
    pods (GPUs or CPUs, see device)."""
    grid_gpu_seconds: float | None = None
    """Estimated GPU-seconds of the full grid (gridDeviceSeconds on a GPU study, 0 on a
    CPU study)."""
    grid_device_seconds: float | None = None
    """Estimated device-seconds of the full grid: finished trials as measured, the others
    from the cost model fitted to them."""
    spend: str | None = None
    """deviceSeconds over gridDeviceSeconds, as a percentage."""
    budget_gpu_seconds: float | None = None
    """The budget in GPU-seconds, when the spec sets one and the trials request GPUs."""
    budget_device_seconds: float | None = None
    """The budget in device-seconds (see device), when the spec sets one."""
    stop_reason: StopReason | None = None
    """Why no more trials start: TargetReached (stopWhen), GridShareSpent (computeShare:
    the larger data sizes are predicted), BudgetSpent or AllDataSizes."""
    windows: list[StageWindow] = Field(default_factory=list)
    """Model sizes planned at each data size (adaptive)."""
    out_of_range: list[str] = Field(default_factory=list)
    """IsoFLOP (budget, model size) pairs not trained: their data size falls outside
    dataSizes' bounds."""
    stage_fits: list[StageFit] = Field(default_factory=list)
    """Fits the adaptive decisions were made from."""
    learning_rates: list[LearningRateChoice] = Field(default_factory=list)
    """In a learning-rate sweep, the winner per data size and model size (the fit uses
    only the winners' results)."""
    cancelled: list[CancelledRun] = Field(default_factory=list)
    """Runs the operator deleted before they ended whose Jobs are still listed; counted
    in deviceSeconds."""
    cancelled_seconds: float = 0.0
    """Wall time of the cancelled runs whose Jobs are gone (their entries leave
    cancelled then, so status stays small); counted in deviceSeconds."""


class ScalingStudyStatus(_Status):
    """Observed state of a study."""

    phase: Phase | None = None
    """Pending, Running, Fitting, Succeeded or Failed."""
    observed_generation: int | None = None
    """The spec generation this status reflects."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Kubernetes-style conditions."""
    trials: TrialCounts | None = None
    """Trials by state."""
    progress: str | None = None
    """Finished/total trials, e.g. 12/32."""
    results: list[TrialRecord] = Field(default_factory=list)
    """One row per finished trial; kept across operator restarts and spec changes."""
    fit: FitStatus | None = None
    """Fitted scaling laws."""
    design: DesignStatus | None = None
    """Trials chosen and device time spent, against the full grid."""

    def to_json(self) -> dict[str, Any]:
        """The status as the API server stores it: camelCase, without empty fields."""
        return self.model_dump(by_alias=True, exclude_none=True)

    @classmethod
    def lenient(cls, raw: Mapping[str, Any]) -> ScalingStudyStatus:
        """The status as found, part by part: a result row, condition or fit that does not
        parse (written by an older operator, or edited by hand) is dropped, not fatal. A
        dropped row's trial runs again; a dropped fit is refitted."""
        try:
            return cls.model_validate(raw)
        except ValidationError:
            pass
        parts: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            key = info.alias or name
            if key not in raw:
                continue
            value, adapter = raw[key], TypeAdapter[Any](info.annotation or Any)
            if isinstance(value, list):
                kept = []
                for item in value:
                    try:
                        kept += adapter.validate_python([item])
                    except ValidationError:
                        log.warning("status.%s: dropped an entry that does not parse", key)
                parts[name] = kept
                continue
            try:
                parts[name] = adapter.validate_python(value)
            except ValidationError:
                log.warning("status.%s does not parse; ignored", key)
        return cls.model_validate(parts)


def _rounded(value: Any, digits: int = 4) -> Any:
    """Significant digits a reader can use."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value
