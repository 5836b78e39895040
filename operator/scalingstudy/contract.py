"""The trainer contract (DESIGN §5): what the operator and the local runner set, and
what a trainer reports. Custom trainer images rely on exactly these names."""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from scalingstudy_sdk.contract import (
    DIVERGED_AT_STEP as DIVERGED_AT_STEP,
)
from scalingstudy_sdk.contract import (
    ENV_CHECKPOINT_DIR as ENV_CHECKPOINT_DIR,
)
from scalingstudy_sdk.contract import (
    ENV_DATA_SIZE as ENV_DATA_SIZE,
)
from scalingstudy_sdk.contract import (
    ENV_LEARNING_RATE as ENV_LEARNING_RATE,
)
from scalingstudy_sdk.contract import (
    ENV_MASTER_ADDR as ENV_MASTER_ADDR,
)
from scalingstudy_sdk.contract import (
    ENV_MASTER_PORT as ENV_MASTER_PORT,
)
from scalingstudy_sdk.contract import (
    ENV_METRIC as ENV_METRIC,
)
from scalingstudy_sdk.contract import (
    ENV_METRICS_PORT as ENV_METRICS_PORT,
)
from scalingstudy_sdk.contract import (
    ENV_MODEL_SIZE as ENV_MODEL_SIZE,
)
from scalingstudy_sdk.contract import (
    ENV_NAMESPACE as ENV_NAMESPACE,
)
from scalingstudy_sdk.contract import (
    ENV_NODE_RANK as ENV_NODE_RANK,
)
from scalingstudy_sdk.contract import (
    ENV_NODES as ENV_NODES,
)
from scalingstudy_sdk.contract import (
    ENV_PROCESSES_PER_POD as ENV_PROCESSES_PER_POD,
)
from scalingstudy_sdk.contract import (
    ENV_PUSHGATEWAY as ENV_PUSHGATEWAY,
)
from scalingstudy_sdk.contract import (
    ENV_RESULT_FILE as ENV_RESULT_FILE,
)
from scalingstudy_sdk.contract import (
    ENV_SEED as ENV_SEED,
)

# The names live in the SDK (one implementation for the operator, the runner and every
# trainer); re-exported here for the executor's code.
from scalingstudy_sdk.contract import (
    ENV_STUDY as ENV_STUDY,
)
from scalingstudy_sdk.contract import (
    ENV_TASK as ENV_TASK,
)
from scalingstudy_sdk.contract import (
    ENV_TASK_FILE as ENV_TASK_FILE,
)
from scalingstudy_sdk.contract import (
    ENV_TRAINING as ENV_TRAINING,
)
from scalingstudy_sdk.contract import (
    ENV_TRAINING_FILE as ENV_TRAINING_FILE,
)
from scalingstudy_sdk.contract import (
    ENV_TRIAL as ENV_TRIAL,
)
from scalingstudy_sdk.contract import (
    EXIT_CONFIG_ERROR as EXIT_CONFIG_ERROR,
)
from scalingstudy_sdk.contract import (
    EXIT_PREEMPTED as EXIT_PREEMPTED,
)
from scalingstudy_sdk.contract import (
    MASTER_PORT as MASTER_PORT,
)
from scalingstudy_sdk.contract import (
    METRIC as METRIC,
)
from scalingstudy_sdk.contract import (
    MICRO_BATCH as MICRO_BATCH,
)
from scalingstudy_sdk.contract import (
    NORMALISATION_BATCH_CHANGED as NORMALISATION_BATCH_CHANGED,
)
from scalingstudy_sdk.contract import (
    PROGRESS_GAUGE_KEYS as PROGRESS_GAUGE_KEYS,
)
from scalingstudy_sdk.contract import (
    PROGRESS_PUSH_JOB as PROGRESS_PUSH_JOB,
)
from scalingstudy_sdk.contract import (
    PROGRESS_PUSH_SECONDS as PROGRESS_PUSH_SECONDS,
)
from scalingstudy_sdk.contract import (
    PUSH_JOB as PUSH_JOB,
)
from scalingstudy_sdk.contract import (
    SCHEDULE_KEYS as SCHEDULE_KEYS,
)
from scalingstudy_sdk.contract import (
    TASK_KEY as TASK_KEY,
)
from scalingstudy_sdk.contract import (
    TRAINING_KEY as TRAINING_KEY,
)
from scalingstudy_sdk.contract import (
    TRIAL_GAUGES as TRIAL_GAUGES,
)
from scalingstudy_sdk.contract import (
    TRIAL_LABELS as TRIAL_LABELS,
)


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
    normalisation_batch_changed: bool | None = None
    """True: an out-of-memory cut a BatchNorm model's micro-batch, which is its
    normalisation batch, so its loss may differ from a run at the planned batch."""
    diverged_at_step: int | None = None
    """The step from which the training loss was not finite (the result is the best
    evaluation before it)."""


class TrialResult(ResultFields):
    """A trainer's final report: the metric is required, other keys are kept as extras."""

    model_config = ConfigDict(extra="allow")

    loss: float
    """The study's metric; in the JSON under the metric's name."""

    def to_json(self, metric: str = METRIC) -> dict[str, Any]:
        """The result file's JSON: the metric under its own name (and as validation_loss);
        a trainer's word on its result (a changed normalisation batch, a divergence) only
        where it has one."""
        body = self.model_dump(exclude={"loss"})
        for key in (NORMALISATION_BATCH_CHANGED, DIVERGED_AT_STEP):
            if body.get(key) is None:
                body.pop(key, None)
        return {metric: self.loss, METRIC: self.loss, **body}


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
    diverged = _optional_number(raw, DIVERGED_AT_STEP)
    changed = raw.get(NORMALISATION_BATCH_CHANGED)
    if changed is not None and not isinstance(changed, bool):
        raise ResultError(f"result field {NORMALISATION_BATCH_CHANGED!r} must be true or false "
                          f"(got {changed!r})")  # fmt: skip
    known = {metric, *RESULT_KEYS, *ResultFields.model_fields}
    return TrialResult(
        loss=loss,
        parameters=_optional_number(raw, "parameters"),
        train_loss=_optional_number(raw, "train_loss"),
        steps=None if steps is None else int(steps),
        samples_seen=None if seen is None else int(seen),
        normalisation_batch_changed=changed,
        diverged_at_step=None if diverged is None else int(diverged),
        **{k: v for k, v in raw.items() if k not in known},
    )
