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
    model_validator,
)

from scalingstudy.spec.base import (
    API_VERSION,
    BUILTIN_TASKS,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ENV_NAME,
    GROUP,
    KIND,
    MAX_LIST_SIZES,
    MAX_TRIALS,
    PLURAL,
    RESERVED_ENV_PREFIX,
    VERSION,
    SpecError,
    SpecModel,
    cel,
)
from scalingstudy.spec.design import Budget, DesignSpec, StopWhen
from scalingstudy.spec.grid import ModelSizeGrid, SizeGrid
from scalingstudy.spec.isoflop_grid import isoflop_cells
from scalingstudy.spec.parameters import builtin_parameters
from scalingstudy.spec.pod import (
    EnvVar,
    LabelValueName,
    ObjectName,
    Resources,
    Toleration,
    TrainerSpec,
    VolumeMount,
)
from scalingstudy.spec.problems import UniqueKeyLoader, describe, dotted, line_of, yaml_problem
from scalingstudy.spec.pruning import PRUNING_ADAPTIVE_SEEDS as PRUNING_ADAPTIVE_SEEDS
from scalingstudy.spec.pruning import PRUNING_METRIC as PRUNING_METRIC
from scalingstudy.spec.pruning import STUDY_PRUNING_RULES, pruning_problem
from scalingstudy.spec.training import (
    EarlyStopping,
    FitSpec,
    LearningRates,
    MetricSpec,
    TaskSpec,
    TrainingSpec,
)

# --------------------------------------------------------------------------- study


class ScalingStudySpec(SpecModel):
    """A scaling study: train every model size on every nested data subset, then fit power laws."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.task == oldSelf.task",
                    "spec.task is immutable: results depend on it",
                    ".task",
                ),
                cel(
                    "self.training == oldSelf.training",
                    "spec.training is immutable: results depend on it",
                    ".training",
                ),
                cel(
                    "self.metric == oldSelf.metric",
                    "spec.metric is immutable: results depend on it",
                    ".metric",
                ),
                cel(
                    "!has(self.dataSizes.values) || size(self.dataSizes.values) >= 3",
                    "dataSizes needs at least 3 sizes: a learning curve is fitted to them",
                    ".dataSizes",
                ),
                cel(
                    "has(self.dataSizes.values) || !has(self.dataSizes.min) || "
                    "!has(self.dataSizes.max) || double(self.dataSizes.max) * 1.000000001 >= "
                    "double(self.dataSizes.min) * self.dataSizes.factor * self.dataSizes.factor",
                    "dataSizes needs at least 3 sizes: max must reach min * factor^2",
                    ".dataSizes",
                ),
                cel(
                    "!has(self.workloadPriorityClassName) || has(self.queueName)",
                    "workloadPriorityClassName (a Kueue WorkloadPriorityClass) needs queueName",
                ),
                cel(
                    "!has(self.learningRates) || !has(self.design) || "
                    "!has(self.design.strategy) || self.design.strategy != 'adaptive'",
                    "learningRates (a sweep) needs design.strategy: grid",
                ),
                *STUDY_PRUNING_RULES,
                cel(
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
    model_sizes: ModelSizeGrid
    """Model-size knob values (width for MLPs; width and depth for transformers)."""
    seeds: Annotated[int, Field(ge=1, le=32)] = 1
    """Trials per (data size, model size) with different initialisation seeds."""
    design: DesignSpec = Field(default_factory=DesignSpec)
    """Which trials to train: the full grid (default) or adaptively, with a budget."""
    learning_rates: LearningRates | None = None
    """A learning-rate sweep (grid designs): each trial once per value, the best kept."""
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
    workload_priority_class_name: LabelValueName | None = None
    """Kueue WorkloadPriorityClass of the trials' Jobs (label kueue.x-k8s.io/priority-class):
    their priority in queueing and preemption. Without it Kueue takes the priority of
    trainer.priorityClassName (a pod PriorityClass)."""

    @model_validator(mode="after")
    def _bounded(self) -> ScalingStudySpec:
        n_data = len(self.data_sizes.sizes())
        if n_data < 3:
            raise ValueError(f"dataSizes gives {n_data} sizes; a learning curve needs at least 3")
        design, largest = self.design, self.model_sizes.sizes()[-1]
        if design.max_model_size is not None and design.max_model_size <= largest:
            raise ValueError(
                f"design.maxModelSize must be above the largest model size {largest} "
                f"(got {design.max_model_size})"
            )
        if design.adaptive and design.full_grid_data_sizes > n_data:
            raise ValueError(
                f"design.fullGridDataSizes is {design.full_grid_data_sizes} but dataSizes "
                f"gives only {n_data} sizes"
            )
        if self.learning_rates is not None and design.adaptive:
            raise ValueError("learningRates (a sweep) needs design.strategy: grid")
        pruning_problem(design.pruning.enabled, design.adaptive, self.metric.name, self.seeds)
        if self.workload_priority_class_name and not self.queue_name:
            raise ValueError(
                "workloadPriorityClassName (a Kueue WorkloadPriorityClass) needs queueName"
            )
        world = self.trainer.nodes * self.trainer.processes()
        if self.training.batch_size < world:
            raise ValueError(
                f"training.batchSize {self.training.batch_size} is smaller than the trial's "
                f"{world} processes (trainer.nodes x processesPerPod): each trains on its "
                "share of every batch"
            )
        if design.isoflop and len(self.model_sizes.sizes()) < 3:
            raise ValueError("design.strategy isoflop needs at least 3 model sizes per budget "
                             "to place an optimum between them")  # fmt: skip
        if design.compute_budgets is not None:
            self._isoflop_reach()
        extensions = len(self.model_size_candidates()) - len(self.model_sizes.sizes())
        sweep = len(self.learning_rate_values())
        rows = len(design.compute_budgets.sizes()) if design.compute_budgets else n_data
        total = rows * (len(self.model_sizes.sizes()) + extensions) * self.seeds * sweep
        if total > MAX_TRIALS:
            counted = f" (with {extensions} extension model sizes)" if extensions else ""
            swept = " x learningRates" if sweep > 1 else ""
            raise ValueError(
                f"{'computeBudgets' if design.isoflop else 'dataSizes'} x modelSizes x "
                f"seeds{swept}{counted} = {total} trials; at most "
                f"{MAX_TRIALS} are allowed"
            )
        return self

    def _isoflop_reach(self) -> None:
        assert self.design.compute_budgets is not None
        sizes = self.data_sizes.sizes()
        budgets = self.design.compute_budgets.sizes()
        plan = isoflop_cells(budgets, self.design.flops_per_parameter_per_item,
                             self.model_sizes.sizes(), self.parameter_counts(), sizes[0],
                             sizes[-1])  # fmt: skip
        problem = plan.reach_problem(budgets, sizes[0], sizes[-1])
        if problem:
            raise ValueError(problem)

    def parameter_counts(self) -> dict[int, float] | None:
        """N of each listed model size: modelSizes.parameters, else the built-in task's
        count (no trainer.command), else None (the size itself is taken as N)."""
        given = self.model_sizes.parameter_map()
        if given is not None or self.trainer.command:
            return given
        counts = {m: builtin_parameters(self.task.name, self.task.options, m)
                  for m in self.model_sizes.sizes()}  # fmt: skip
        return None if None in counts.values() else {m: float(n or 0) for m, n in counts.items()}

    def trial_count(self) -> int:
        """Trials of the full grid of the listed sizes (an IsoFLOP study trains those of its
        budgets: `plan.plan_trials`)."""
        cells = len(self.data_sizes.sizes()) * len(self.model_sizes.sizes())
        return cells * self.seeds * len(self.learning_rate_values())

    def learning_rate_values(self) -> list[float | None]:
        """The swept learning rates, or [None]: no sweep (training.learningRate)."""
        return list(self.learning_rates.values) if self.learning_rates else [None]

    def model_size_candidates(self) -> list[int]:
        """The listed model sizes and, with design.extendModelSizes, the larger ones an
        adaptive study may add: the grid's factor (the ratio of the two largest listed
        sizes for a list) applied to the largest until design.maxModelSize."""
        listed = self.model_sizes.sizes()
        ceiling = self.design.max_model_size
        if ceiling is None or len(listed) < 2:
            return listed
        factor = listed[-1] / listed[-2]
        out = list(listed)
        while len(out) < len(listed) + 64:
            nxt = max(round(out[-1] * factor), out[-1] + 1)
            if nxt > ceiling:
                break
            out.append(nxt)
        return out


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


def problems_of(
    exc: ValidationError,
    prefix: str = "",
    root: type[BaseModel] | None = None,
    text: str | None = None,
    file: str | None = None,
) -> list[str]:
    """One readable line per problem, naming the field in the file's own (camelCase)
    spelling, what is allowed in words and the nearest valid name; with the file's
    ``text``, prefixed ``file:line:`` (the line of the field, or of the mapping a missing
    one belongs in). ``root`` is the model validated (default: a whole ScalingStudy, or
    its spec when ``prefix`` is "spec")."""
    model = root or (ScalingStudySpec if prefix == "spec" else ScalingStudy)
    lead = tuple(prefix.split(".")) if prefix else ()
    seen: list[str] = []
    for error in exc.errors():
        where, what = describe(error, model, prefix)
        line = f"{dotted(where.path, prefix)}: {what}"
        number = line_of(text, where.path, lead) if text is not None else None
        if file is not None:
            line = f"{file}:{number}: {line}" if number else f"{file}: {line}"
        if line not in seen:
            seen.append(line)
    return seen


def _validate_study(
    document: Any, text: str | None = None, file: str | None = None
) -> ScalingStudy:
    if not isinstance(document, dict):
        where = f"{file}: " if file else ""
        raise SpecError(
            [
                f"{where}study: expected a mapping with apiVersion, kind, metadata and spec "
                f"(got {type(document).__name__})"
            ]
        )
    try:
        return ScalingStudy.model_validate(document)
    except ValidationError as exc:
        raise SpecError(problems_of(exc, text=text, file=file)) from None


def parse_study(document: Any) -> ScalingStudy:
    """Validate a parsed YAML/JSON document (a whole object) and raise SpecError on problems."""
    return _validate_study(document)


def parse_spec(spec: Any) -> ScalingStudySpec:
    """Validate only a spec (as the operator receives it) and raise SpecError on problems."""
    try:
        return ScalingStudySpec.model_validate(spec)
    except ValidationError as exc:
        raise SpecError(problems_of(exc, "spec")) from None


def load_study(path: str | Path) -> ScalingStudy:
    """Read a study file (YAML, one document) as ``kubectl apply`` would take it; each
    problem names the file and the line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{p}: cannot read study file: {exc}"]) from None
    try:
        documents = [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError([yaml_problem(str(p), text, exc)]) from None
    if len(documents) != 1:
        raise SpecError([f"{p}: expected exactly one YAML document, found {len(documents)}"])
    return _validate_study(documents[0], text, str(p))


def spec_digest_fields(spec: ScalingStudySpec) -> dict[str, Any]:
    """The parts of a spec that results depend on; changing them invalidates finished trials."""
    return spec.model_dump(mode="json", by_alias=True, include={"task", "training", "metric"})


__all__ = [
    "API_VERSION",
    "BUILTIN_TASKS",
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "ENV_NAME",
    "GROUP",
    "KIND",
    "MAX_LIST_SIZES",
    "MAX_TRIALS",
    "PLURAL",
    "RESERVED_ENV_PREFIX",
    "VERSION",
    "Budget",
    "DesignSpec",
    "EarlyStopping",
    "EnvVar",
    "FitSpec",
    "LearningRates",
    "MetricSpec",
    "ModelSizeGrid",
    "ObjectMeta",
    "ObjectName",
    "Resources",
    "ScalingStudy",
    "ScalingStudySpec",
    "SizeGrid",
    "SpecError",
    "StopWhen",
    "TaskSpec",
    "Toleration",
    "TrainerSpec",
    "TrainingSpec",
    "VolumeMount",
    "load_study",
    "parse_spec",
    "parse_study",
    "problems_of",
    "spec_digest_fields",
]
