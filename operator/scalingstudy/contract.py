"""The trainer contract (DESIGN §5): what the operator and the local runner set, and
what a trainer reports. Custom trainer images rely on exactly these names."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

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


@dataclass(frozen=True)
class Topology:
    """How many processes train one trial, and where they meet."""

    nodes: int = 1
    processes_per_pod: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = MASTER_PORT

    @classmethod
    def local(cls, spec: ScalingStudySpec) -> Topology:
        """One machine runs every process of the trial: the same world size (and so the
        same per-process batch) as the cluster's nodes x processesPerPod."""
        return cls(processes_per_pod=spec.trainer.nodes * spec.trainer.processes())

    def environment(self) -> dict[str, str]:
        """The rendezvous variables; the node rank is pod 0's (a cluster sets each pod's)."""
        return {
            ENV_NODES: str(self.nodes),
            ENV_NODE_RANK: "0",
            ENV_PROCESSES_PER_POD: str(self.processes_per_pod),
            ENV_MASTER_ADDR: self.master_addr,
            ENV_MASTER_PORT: str(self.master_port),
        }


def trial_config(spec: ScalingStudySpec) -> dict[str, str]:
    """The task and training settings as the JSON a trainer reads: the study's ConfigMap
    data on a cluster, the inline variables locally."""
    dump = {"mode": "json", "by_alias": True}
    return {
        TASK_KEY: json.dumps(spec.task.model_dump(**dump), sort_keys=True),  # type: ignore[arg-type]
        TRAINING_KEY: json.dumps(spec.training.model_dump(**dump), sort_keys=True),  # type: ignore[arg-type]
    }


def trial_environment(
    study: str,
    namespace: str,
    trial: Trial,
    spec: ScalingStudySpec,
    *,
    result_file: str,
    pushgateway: str = "",
    checkpoint_dir: str = "",
    config_dir: str = "",
    topology: Topology | None = None,
) -> dict[str, str]:
    """The environment of one trial, identical for a pod and a local process except for
    where the task and training settings are: inline, or (``config_dir``, where the
    study's ConfigMap is mounted) in files; and the topology (default: the local one)."""
    config = trial_config(spec)
    if config_dir:
        where = {
            ENV_TASK_FILE: f"{config_dir}/{TASK_KEY}",
            ENV_TRAINING_FILE: f"{config_dir}/{TRAINING_KEY}",
        }
    else:
        where = {ENV_TASK: config[TASK_KEY], ENV_TRAINING: config[TRAINING_KEY]}
    if trial.learning_rate is not None:
        where[ENV_LEARNING_RATE] = repr(trial.learning_rate)
    return {
        ENV_STUDY: study,
        ENV_NAMESPACE: namespace,
        ENV_TRIAL: trial.name,
        ENV_DATA_SIZE: str(trial.data_size),
        ENV_MODEL_SIZE: str(trial.model_size),
        ENV_SEED: str(trial.seed),
        ENV_PUSHGATEWAY: pushgateway,
        ENV_RESULT_FILE: result_file,
        **where,
        ENV_METRIC: spec.metric.name,
        ENV_CHECKPOINT_DIR: checkpoint_dir,
        **(topology or Topology.local(spec)).environment(),
    }


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
