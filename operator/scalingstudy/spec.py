"""The ScalingStudy resource as pydantic models: the one source of truth.

The same models validate a study file for ``scalingstudy run`` and generate the
CRD's OpenAPI schema (``scalingstudy.crd``), so a study that loads locally is a
study the API server accepts. Rules that span fields are written twice on
purpose: once as a pydantic validator (for the local runner and the operator)
and once as a CEL rule (``x-kubernetes-validations``) so ``kubectl apply``
rejects the object before it is stored; tests hold the two in agreement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "scalingstudy.io"
VERSION = "v1alpha1"
KIND = "ScalingStudy"
PLURAL = "scalingstudies"
API_VERSION = f"{GROUP}/{VERSION}"

#: Upper bound on trials in one study. status.results keeps one row per trial
#: and an object in etcd is limited to about 1.5 MB; 2,000 rows stay far below.
MAX_TRIALS = 2000
MAX_LIST_SIZES = 64
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
RESERVED_ENV_PREFIX = "SCALINGSTUDY_"


class SpecError(ValueError):
    """A study file or object that cannot be used, with one readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class _Model(BaseModel):
    """Base: camelCase on the wire (as Kubernetes), unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


def _cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


# --------------------------------------------------------------------------- task


class TaskSpec(_Model):
    """What to train: a built-in task of the trainer image, or a custom trainer's own name."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    """Task name. Built-in trainer tasks: teacher-student, char-lm, image-classification.
    With a custom trainer (trainer.command set) any DNS-label name is passed through."""

    data_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    """Seed of the fixed permutation whose prefixes are the nested training subsets.
    Every trial of a study uses the same one, so each smaller subset lies inside every
    larger one."""

    options: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Task-specific settings passed to the trainer as JSON (for example corpus path,
    context length, model family). The trainer rejects unknown keys with a configuration error."""


# --------------------------------------------------------------------------- trainer pod


class EnvVar(_Model):
    """An environment variable for the trainer container.

    Names starting SCALINGSTUDY_ are reserved for the trainer contract."""

    name: Annotated[str, Field(min_length=1, max_length=256, pattern=ENV_NAME)]
    """Variable name."""
    value: str | None = None
    """Literal value."""
    value_from: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef)."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(
                f"names starting with {RESERVED_ENV_PREFIX} are set by scalingstudy itself"
            )
        return name


class Toleration(_Model):
    """A Kubernetes toleration, for GPU node taints."""

    key: str | None = None
    """Taint key to tolerate; empty with operator Exists tolerates everything."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """How key and value are compared."""
    value: str | None = None
    """Taint value to match with operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = None
    """For NoExecute: how long the pod stays bound after the taint appears."""


class VolumeMount(_Model):
    """Where a volume from trainer.volumes appears in the trainer container."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    """Name of a volume in trainer.volumes."""
    mount_path: Annotated[str, Field(min_length=1, pattern=r"^/")]
    """Absolute path inside the container."""
    read_only: bool = False
    """Mount read-only."""
    sub_path: str | None = None
    """Mount only this path inside the volume."""


class ObjectName(_Model):
    """A reference to an object in the study's namespace by name."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
    """Object name."""


Quantity = int | Annotated[str, Field(pattern=r"^[0-9.+\-eEinumkKMGTP]+$")]


class Resources(_Model):
    """Compute resources of the trainer container, e.g. limits: {nvidia.com/gpu: 1}."""

    limits: dict[str, Quantity] = Field(default_factory=dict)
    """Maximum resources (cpu, memory, nvidia.com/gpu, ...)."""
    requests: dict[str, Quantity] = Field(default_factory=dict)
    """Resources the scheduler reserves."""


class TrainerSpec(_Model):
    """The parts of every trial's pod that a user sets. The operator adds the rest:
    environment contract, security context, labels and owner references."""

    image: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    """Trainer image. Empty: the operator's default trainer image (built-in tasks).
    Ignored by the local runner, which runs the trainer in its own Python environment."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """When the kubelet pulls the image."""
    command: list[str] | None = Field(default=None, max_length=64)
    """Entrypoint of a custom trainer (it must honour the trainer contract).
    Empty: the built-in trainer."""
    args: list[str] | None = Field(default=None, max_length=256)
    """Arguments to the command."""
    env: list[EnvVar] = Field(default_factory=list, max_length=128)
    """Extra environment variables."""
    resources: Resources = Field(default_factory=Resources)
    """Container resources; GPUs as limits: {nvidia.com/gpu: N}."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the trial pods must match."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    """Tolerations for tainted (for example GPU) nodes."""
    affinity: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """A Kubernetes Affinity object, passed through to the pod."""
    volumes: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    )
    """Kubernetes Volume objects (datasets, corpora, checkpoint storage)."""
    volume_mounts: list[VolumeMount] = Field(default_factory=list, max_length=64)
    """Mounts of trainer.volumes into the trainer container."""
    service_account_name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)] | None = None
    """Service account of trial pods (default: the namespace's default)."""
    priority_class_name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)] | None = None
    """PriorityClass of trial pods; also labels Jobs for Kueue when queueName is set."""
    image_pull_secrets: list[ObjectName] = Field(default_factory=list, max_length=16)
    """Secrets for pulling the trainer image."""
    active_deadline_seconds: Annotated[int, Field(ge=1, le=30 * 24 * 3600)] | None = None
    """Wall-clock limit of one trial's Job; a trial over it fails with reason DeadlineExceeded."""
    backoff_limit: Annotated[int, Field(ge=0, le=10)] = 2
    """Retries of a failed trial pod before the trial counts as failed
    (disruptions do not count)."""
    termination_grace_period_seconds: Annotated[int, Field(ge=1, le=3600)] | None = None
    """Time a trial pod gets after SIGTERM (eviction, preemption) to save its checkpoint
    before it is killed; Kubernetes' default is 30 s. Raise it for models whose
    checkpoint takes longer to write."""

    @model_validator(mode="after")
    def _mounts_name_volumes(self) -> TrainerSpec:
        declared = {str(v.get("name")) for v in self.volumes}
        for i, mount in enumerate(self.volume_mounts):
            if mount.name not in declared:
                raise ValueError(
                    f"volumeMounts[{i}].name {mount.name!r} names no entry of trainer.volumes"
                )
        return self


# --------------------------------------------------------------------------- grids


class SizeGrid(_Model):
    """A geometric range (min, max, factor) or an explicit list of values."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.values) != (has(self.min) || has(self.max))",
                    "give either values, or min and max (with an optional factor), not both",
                ),
                _cel(
                    "has(self.values) || (has(self.min) && has(self.max))",
                    "a range needs both min and max",
                ),
                _cel(
                    "!has(self.min) || !has(self.max) || self.min < self.max",
                    "min must be smaller than max",
                ),
            ]
        }
    )

    min: Annotated[int, Field(ge=1)] | None = None
    """Smallest size of a geometric range."""
    max: Annotated[int, Field(ge=1)] | None = None
    """Largest size of a geometric range (included when the factor reaches it)."""
    factor: Annotated[float, Field(gt=1, le=1000)] = 2.0
    """Ratio between neighbouring sizes of a range (the paper steps by about 2)."""
    values: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, min_length=1, max_length=MAX_LIST_SIZES
    )
    """Explicit sizes, instead of a range."""

    @model_validator(mode="after")
    def _one_form(self) -> SizeGrid:
        has_range = self.min is not None or self.max is not None
        if (self.values is not None) == has_range:
            raise ValueError(
                "give either values, or min and max (with an optional factor), not both"
            )
        if self.values is not None:
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"values must not repeat (got {self.values})")
            return self
        if self.min is None or self.max is None:
            raise ValueError("a range needs both min and max")
        if self.min >= self.max:
            raise ValueError(f"min must be smaller than max (got min={self.min}, max={self.max})")
        if len(self.sizes()) > MAX_LIST_SIZES:
            raise ValueError(
                f"min={self.min}, max={self.max}, factor={self.factor} gives "
                f"{len(self.sizes())} sizes; at most {MAX_LIST_SIZES} are allowed (raise factor)"
            )
        return self

    def sizes(self) -> list[int]:
        """The sizes in increasing order; geometric ranges are rounded to integers."""
        if self.values is not None:
            return sorted(self.values)
        assert self.min is not None and self.max is not None
        out: list[int] = []
        k = 0
        while True:
            value = self.min * self.factor**k
            if value > self.max * (1 + 1e-9) or len(out) > 10 * MAX_LIST_SIZES:
                break
            rounded = round(value)
            if not out or rounded > out[-1]:
                out.append(rounded)
            k += 1
        return out


# --------------------------------------------------------------------------- training


class EarlyStopping(_Model):
    """Stop a trial when validation loss stops improving; the best value is its result."""

    patience: Annotated[int, Field(ge=1, le=1000)] = 5
    """Evaluations without an improvement of at least minDelta before stopping."""
    min_delta: Annotated[float, Field(ge=0)] = 0.0
    """Smallest decrease of validation loss that counts as an improvement."""


class TrainingSpec(_Model):
    """Optimisation settings shared by every trial (immutable once the study exists)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self.minSteps <= self.maxSteps", "minSteps must not exceed maxSteps")
            ]
        }
    )

    epochs: Annotated[float, Field(gt=0, le=10000)] = 50.0
    """Budget in passes over the trial's subset, so small subsets get few steps and large ones
    many; clipped to [minSteps, maxSteps]. Early stopping usually ends a trial sooner."""
    min_steps: Annotated[int, Field(ge=1, le=100_000_000)] = 200
    """Fewest optimiser steps of any trial."""
    max_steps: Annotated[int, Field(ge=1, le=100_000_000)] = 5000
    """Most optimiser steps of any trial."""
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 64
    """Examples (or sequences) per optimiser step; capped at the subset size."""
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 1e-3
    """Peak learning rate of AdamW."""
    weight_decay: Annotated[float, Field(ge=0, le=10)] = 0.0
    """AdamW weight decay."""
    eval_every: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    """Steps between validation evaluations."""
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    """Early stopping on validation loss."""

    @model_validator(mode="after")
    def _steps_ordered(self) -> TrainingSpec:
        if self.min_steps > self.max_steps:
            raise ValueError(
                f"minSteps must not exceed maxSteps (got minSteps={self.min_steps}, "
                f"maxSteps={self.max_steps})"
            )
        return self


class MetricSpec(_Model):
    """The trial result the learning curve is made of."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z_][a-z0-9_]*$")] = (
        "validation_loss"
    )
    """Key of the trainer's result JSON (and suffix of its scalingstudy_trial_ gauge)."""
    goal: Literal["minimize"] = "minimize"
    """Only minimize: the power law describes a falling error or loss."""


class FitSpec(_Model):
    """How the learning curve is fitted and what it predicts."""

    form: Literal["auto", "power-law", "power-law-plus-constant"] = "auto"
    """auto: choose by information criterion whether the irreducible error gamma is identified."""
    confidence: Annotated[float, Field(ge=0.5, le=0.999)] = 0.9
    """Level of the bootstrap confidence intervals."""
    bootstrap: Annotated[int, Field(ge=0, le=10000)] = 200
    """Bootstrap resamples (0: no intervals)."""
    predict_at: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, max_length=32)
    """Data sizes to predict the loss at (default: 10 times the largest data size)."""
    target_loss: Annotated[float, Field(gt=0)] | None = None
    """Report the data size needed to reach this loss."""


# --------------------------------------------------------------------------- study


class ScalingStudySpec(_Model):
    """A scaling study: train every model size on every nested data subset, then fit power laws."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.task == oldSelf.task",
                    "spec.task is immutable: results depend on it",
                    ".task",
                ),
                _cel(
                    "self.training == oldSelf.training",
                    "spec.training is immutable: results depend on it",
                    ".training",
                ),
                _cel(
                    "self.metric == oldSelf.metric",
                    "spec.metric is immutable: results depend on it",
                    ".metric",
                ),
                _cel(
                    "!has(self.dataSizes.values) || size(self.dataSizes.values) >= 3",
                    "dataSizes needs at least 3 sizes: a learning curve is fitted to them",
                    ".dataSizes",
                ),
                _cel(
                    "has(self.dataSizes.values) || !has(self.dataSizes.min) || "
                    "!has(self.dataSizes.max) || double(self.dataSizes.max) * 1.000000001 >= "
                    "double(self.dataSizes.min) * self.dataSizes.factor * self.dataSizes.factor",
                    "dataSizes needs at least 3 sizes: max must reach min * factor^2",
                    ".dataSizes",
                ),
                _cel(
                    "!has(self.dataSizes.values) || !has(self.modelSizes.values) || "
                    "size(self.dataSizes.values) * size(self.modelSizes.values) * self.seeds"
                    f" <= {MAX_TRIALS}",
                    f"dataSizes x modelSizes x seeds must be at most {MAX_TRIALS} trials",
                ),
            ]
        }
    )

    task: TaskSpec
    """What to train."""
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    """Pod template parts for every trial."""
    data_sizes: SizeGrid
    """Training-subset sizes, in the task's unit (examples, or characters for language models)."""
    model_sizes: SizeGrid
    """Model-size knob values (width for MLPs; width and depth for transformers)."""
    seeds: Annotated[int, Field(ge=1, le=32)] = 1
    """Trials per (data size, model size) with different initialisation seeds."""
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    """Optimisation settings."""
    metric: MetricSpec = Field(default_factory=MetricSpec)
    """The result the curve is fitted to."""
    fit: FitSpec = Field(default_factory=FitSpec)
    """Fit and prediction settings."""
    parallelism: Annotated[int, Field(ge=1, le=1000)] = 4
    """Trials running at once."""
    max_failed_trials: Annotated[int, Field(ge=0, le=MAX_TRIALS)] = 3
    """The study fails once more trials than this have failed."""
    queue_name: Annotated[str, Field(max_length=63, pattern=DNS_LABEL)] | None = None
    """Kueue LocalQueue: Jobs carry kueue.x-k8s.io/queue-name and start suspended until admitted."""

    @model_validator(mode="after")
    def _bounded(self) -> ScalingStudySpec:
        n_data = len(self.data_sizes.sizes())
        if n_data < 3:
            raise ValueError(f"dataSizes gives {n_data} sizes; a learning curve needs at least 3")
        total = n_data * len(self.model_sizes.sizes()) * self.seeds
        if total > MAX_TRIALS:
            raise ValueError(
                f"dataSizes x modelSizes x seeds = {total} trials; at most {MAX_TRIALS} are allowed"
            )
        return self

    def trial_count(self) -> int:
        return len(self.data_sizes.sizes()) * len(self.model_sizes.sizes()) * self.seeds


class ObjectMeta(BaseModel):
    """The parts of Kubernetes metadata a study uses; the rest passes through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    namespace: str | None = None


class ScalingStudy(BaseModel):
    """A whole ScalingStudy object as written in a study file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["scalingstudy.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ScalingStudy"]
    metadata: ObjectMeta
    spec: ScalingStudySpec
    status: dict[str, Any] | None = None


# --------------------------------------------------------------------------- loading


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"int", "str", "function-after[_not_reserved(), str]"} or "[" in str(part):
            continue  # union branch labels, not field names
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(error: Any, prefix: str) -> str:
    loc = _location(tuple(error["loc"]))
    where = f"{prefix}.{loc}" if prefix and loc else (loc or prefix or "study")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in {"extra_forbidden"}:
        return f"{where}: unknown field"
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    value = error.get("input")
    shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
    return f"{where}: {message}{shown}"


def problems_of(exc: ValidationError, prefix: str = "") -> list[str]:
    """One readable line per problem, naming the field in the file's own (camelCase) spelling."""
    seen: list[str] = []
    for error in exc.errors():
        line = _describe(error, prefix)
        if line not in seen:
            seen.append(line)
    return seen


def parse_study(document: Any) -> ScalingStudy:
    """Validate a parsed YAML/JSON document (a whole object) and raise SpecError on problems."""
    if not isinstance(document, dict):
        raise SpecError(
            [
                f"study: expected a mapping with apiVersion, kind, metadata and spec "
                f"(got {type(document).__name__})"
            ]
        )
    try:
        return ScalingStudy.model_validate(document)
    except ValidationError as exc:
        raise SpecError(problems_of(exc)) from None


def parse_spec(spec: Any) -> ScalingStudySpec:
    """Validate only a spec (as the operator receives it) and raise SpecError on problems."""
    try:
        return ScalingStudySpec.model_validate(spec)
    except ValidationError as exc:
        raise SpecError(problems_of(exc, "spec")) from None


def load_study(path: str | Path) -> ScalingStudy:
    """Read a study file (YAML, one document) as ``kubectl apply`` would take it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{p}: cannot read study file: {exc}"]) from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError([f"{p}: not valid YAML: {exc}".replace("\n", " ")]) from None
    if len(documents) != 1:
        raise SpecError([f"{p}: expected exactly one YAML document, found {len(documents)}"])
    return parse_study(documents[0])


def spec_digest_fields(spec: ScalingStudySpec) -> dict[str, Any]:
    """The parts of a spec that results depend on; changing them invalidates finished trials."""
    return spec.model_dump(mode="json", by_alias=True, include={"task", "training", "metric"})
