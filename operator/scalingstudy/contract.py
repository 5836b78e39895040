"""The trainer contract (DESIGN §5): what the operator and the local runner set, and
what a trainer reports. Custom trainer images rely on exactly these names."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from scalingstudy.plan import Trial
from scalingstudy.spec import ScalingStudySpec

ENV_STUDY = "SCALINGSTUDY_STUDY"
ENV_NAMESPACE = "SCALINGSTUDY_NAMESPACE"
ENV_TRIAL = "SCALINGSTUDY_TRIAL"
ENV_DATA_SIZE = "SCALINGSTUDY_DATA_SIZE"
ENV_MODEL_SIZE = "SCALINGSTUDY_MODEL_SIZE"
ENV_SEED = "SCALINGSTUDY_SEED"
ENV_PUSHGATEWAY = "SCALINGSTUDY_PUSHGATEWAY"
ENV_RESULT_FILE = "SCALINGSTUDY_RESULT_FILE"
# Extensions for the built-in trainer: the task and training settings as JSON.
ENV_TASK = "SCALINGSTUDY_TASK"
ENV_TRAINING = "SCALINGSTUDY_TRAINING"
ENV_METRIC = "SCALINGSTUDY_METRIC"
ENV_CHECKPOINT_DIR = "SCALINGSTUDY_CHECKPOINT_DIR"
#: Port of the trainer's /metrics (progress while training); unset or 0: not served.
ENV_METRICS_PORT = "SCALINGSTUDY_METRICS_PORT"

#: Exit status of a trainer whose configuration cannot work (bad task, missing corpus):
#: retrying cannot help, so the operator fails the trial at once (EX_CONFIG of sysexits.h).
EXIT_CONFIG_ERROR = 78
#: Exit status after SIGTERM with a checkpoint saved: the retry resumes from it.
EXIT_PREEMPTED = 143

RESULT_KEYS = ("validation_loss", "parameters", "train_loss", "steps", "samples_seen")

#: Result key -> the Pushgateway gauge a trainer pushes it as (DESIGN §5 metric names).
TRIAL_GAUGES = {
    "validation_loss": "scalingstudy_trial_validation_loss",
    "train_loss": "scalingstudy_trial_train_loss",
    "parameters": "scalingstudy_trial_parameters",
    "samples_seen": "scalingstudy_trial_samples_seen",
    "steps": "scalingstudy_trial_step",
}
#: Labels of every trial gauge; namespace, study and trial also form the push group.
TRIAL_LABELS = ("namespace", "study", "trial", "data_size", "model_size", "seed")
PUSH_JOB = "scalingstudy"


def trial_environment(
    study: str,
    namespace: str,
    trial: Trial,
    spec: ScalingStudySpec,
    *,
    result_file: str,
    pushgateway: str = "",
    checkpoint_dir: str = "",
) -> dict[str, str]:
    """The environment of one trial, identical for a pod and a local process."""
    dump = {"mode": "json", "by_alias": True}
    return {
        ENV_STUDY: study,
        ENV_NAMESPACE: namespace,
        ENV_TRIAL: trial.name,
        ENV_DATA_SIZE: str(trial.data_size),
        ENV_MODEL_SIZE: str(trial.model_size),
        ENV_SEED: str(trial.seed),
        ENV_PUSHGATEWAY: pushgateway,
        ENV_RESULT_FILE: result_file,
        ENV_TASK: json.dumps(spec.task.model_dump(**dump), sort_keys=True),  # type: ignore[arg-type]
        ENV_TRAINING: json.dumps(spec.training.model_dump(**dump), sort_keys=True),  # type: ignore[arg-type]
        ENV_METRIC: spec.metric.name,
        ENV_CHECKPOINT_DIR: checkpoint_dir,
    }


class ResultError(ValueError):
    """A trainer's result that cannot be used (missing, not JSON, no finite metric)."""


@dataclass(frozen=True)
class TrialResult:
    """A trainer's final report."""

    loss: float
    parameters: float | None
    train_loss: float | None
    steps: int | None
    samples_seen: int | None
    extra: dict[str, Any]


def _optional_number(raw: dict[str, Any], key: str) -> float | int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ResultError(f"result field {key!r} must be a finite number (got {value!r})")
    return value


def parse_result(text: str, metric: str = "validation_loss") -> TrialResult:
    """Parse a trainer's result JSON; the metric must be a finite positive number."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"result is not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(raw, dict):
        raise ResultError("result must be a JSON object")
    loss = _optional_number(raw, metric)
    if loss is None:
        raise ResultError(f"result has no {metric!r}")
    if loss <= 0:
        raise ResultError(f"result {metric!r} must be positive (got {loss!r})")
    steps = _optional_number(raw, "steps")
    seen = _optional_number(raw, "samples_seen")
    known = {metric, *RESULT_KEYS}
    return TrialResult(
        loss=loss,
        parameters=_optional_number(raw, "parameters"),
        train_loss=_optional_number(raw, "train_loss"),
        steps=None if steps is None else int(steps),
        samples_seen=None if seen is None else int(seen),
        extra={k: v for k, v in raw.items() if k not in known},
    )
