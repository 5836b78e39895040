"""The trainer contract (DESIGN §5): what the operator and the local runner set, and
what a trainer reports. Custom trainer images rely on exactly these names."""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

ENV_STUDY = "SCALINGSTUDY_STUDY"
ENV_NAMESPACE = "SCALINGSTUDY_NAMESPACE"
ENV_TRIAL = "SCALINGSTUDY_TRIAL"
ENV_DATA_SIZE = "SCALINGSTUDY_DATA_SIZE"
ENV_MODEL_SIZE = "SCALINGSTUDY_MODEL_SIZE"
ENV_SEED = "SCALINGSTUDY_SEED"
ENV_PUSHGATEWAY = "SCALINGSTUDY_PUSHGATEWAY"
ENV_RESULT_FILE = "SCALINGSTUDY_RESULT_FILE"
# Extensions for the built-in trainer: the task and training settings as JSON, inline
# (local runs) or, on a cluster, in files of the study's ConfigMap (so a Job does not
# grow with the spec): the _FILE variables name them.
ENV_TASK = "SCALINGSTUDY_TASK"
ENV_TRAINING = "SCALINGSTUDY_TRAINING"
ENV_TASK_FILE = "SCALINGSTUDY_TASK_FILE"
ENV_TRAINING_FILE = "SCALINGSTUDY_TRAINING_FILE"
#: Keys of the study's ConfigMap (`trial_config`) and so file names under its mount.
TASK_KEY = "task.json"
TRAINING_KEY = "training.json"
ENV_METRIC = "SCALINGSTUDY_METRIC"
ENV_CHECKPOINT_DIR = "SCALINGSTUDY_CHECKPOINT_DIR"
#: The trial's learning rate in a learning-rate sweep (unset otherwise): it replaces
#: training.learningRate.
ENV_LEARNING_RATE = "SCALINGSTUDY_LEARNING_RATE"
#: Port of the trainer's /metrics (progress while training); unset or 0: not served.
ENV_METRICS_PORT = "SCALINGSTUDY_METRICS_PORT"
# A trial of several processes (DESIGN §5, distributed trials): how many pods and
# processes per pod, this pod's rank among the trial's pods (its Job completion index),
# and where rank 0 (pod 0, process 0) listens for the rendezvous.
ENV_NODES = "SCALINGSTUDY_NODES"
ENV_NODE_RANK = "SCALINGSTUDY_NODE_RANK"
ENV_PROCESSES_PER_POD = "SCALINGSTUDY_PROCESSES_PER_POD"
ENV_MASTER_ADDR = "SCALINGSTUDY_MASTER_ADDR"
ENV_MASTER_PORT = "SCALINGSTUDY_MASTER_PORT"
#: The rendezvous port on pod 0 (torchrun's default).
MASTER_PORT = 29500

#: Exit status of a trainer whose configuration cannot work (bad task, missing corpus):
#: retrying cannot help, so the operator fails the trial at once (EX_CONFIG of sysexits.h).
EXIT_CONFIG_ERROR = 78
#: Exit status after SIGTERM with a checkpoint saved: the retry resumes from it.
EXIT_PREEMPTED = 143

#: The metric a built-in trainer reports, and the default of spec.metric.name.
METRIC = "validation_loss"

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


class ResultError(ValueError):
    """A trainer's result that cannot be used (missing, not JSON, no finite metric)."""


class ResultFields(BaseModel):
    """The numbers a trainer reports (DESIGN §5), declared once: the trainer's result, a
    trial's record, the status row and the results CSV all take them from here."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, use_attribute_docstrings=True
    )

    loss: float | None = None
    """The study's metric (validation loss) of a succeeded trial."""
    parameters: int | float | None = None
    """Parameter count of the trained model (an int when whole)."""
    train_loss: float | None = None
    """Final training loss."""
    steps: int | None = None
    """Optimiser steps taken."""
    samples_seen: int | None = None
    """Training examples processed."""


class TrialResult(ResultFields):
    """A trainer's final report: the metric is required, other keys are kept as extras."""

    model_config = ConfigDict(extra="allow")

    loss: float
    """The study's metric; in the JSON under the metric's name."""

    def to_json(self, metric: str = METRIC) -> dict[str, Any]:
        """The result file's JSON: the metric under its own name (and as validation_loss)."""
        return {metric: self.loss, METRIC: self.loss, **self.model_dump(exclude={"loss"})}


#: Keys of the result JSON the contract defines.
RESULT_KEYS = (METRIC, *(f for f in ResultFields.model_fields if f != "loss"))

#: Exit status -> the failure reason both executors record (a trainer's own code otherwise
#: reads ExitCodeN, a signal SignalN).
EXIT_REASONS = {EXIT_CONFIG_ERROR: "ConfigError"}
#: The trainer exited 0 but its result is missing or unusable.
REASON_BAD_RESULT = "BadResult"
#: How much of a failed trial's message (its last words) is recorded. Status is readable
#: by whoever may read the study, so a trainer that prints a secret and fails leaks at
#: most this much of its output; it also keeps a status of MAX_TRIALS failed rows small.
MESSAGE_BYTES = 256
#: A failure reason is a CamelCase word (ExitCode3, OOMKilled, DeadlineExceeded).
REASON_BYTES = 63
#: The largest status the operator writes: etcd refuses objects over 1.5 MiB, and the
#: spec and metadata share the object.
STATUS_BYTES_MAX = 1_300_000


def message_tail(text: str, limit: int = MESSAGE_BYTES) -> str:
    """The end of ``text`` that takes at most ``limit`` bytes as UTF-8 and as JSON (control
    characters other than newline and tab become spaces: escaped, they would take six)."""
    clean = "".join(c if c in "\n\t" or c >= " " else " " for c in text[-4 * limit :])
    data = clean.encode("utf-8")
    if len(data) > limit:
        clean = data[-limit:].decode("utf-8", errors="ignore")
    while len(json.dumps(clean, ensure_ascii=False)) - 2 > limit:
        clean = clean[1:]
    return clean


def exit_reason(code: int) -> str:
    """The failure reason of a trainer that exited with ``code`` (negative: a signal)."""
    if code in EXIT_REASONS:
        return EXIT_REASONS[code]
    return f"Signal{-code}" if code < 0 else f"ExitCode{code}"


def _optional_number(raw: dict[str, Any], key: str) -> float | int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ResultError(f"result field {key!r} must be a finite number (got {value!r})")
    return value


def parse_result(text: str, metric: str = METRIC) -> TrialResult:
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
    known = {metric, *RESULT_KEYS, *ResultFields.model_fields}
    return TrialResult(
        loss=loss,
        parameters=_optional_number(raw, "parameters"),
        train_loss=_optional_number(raw, "train_loss"),
        steps=None if steps is None else int(steps),
        samples_seen=None if seen is None else int(seen),
        **{k: v for k, v in raw.items() if k not in known},
    )
