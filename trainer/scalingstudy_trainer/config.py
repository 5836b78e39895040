"""The trial's configuration, read from the trainer contract's environment (DESIGN §5)
through the SDK's `Trial.from_env`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from scalingstudy import contract
from scalingstudy.spec import SpecError, TaskSpec, TrainingSpec, problems_of
from scalingstudy_sdk.trial import Trial, TrialError
from scalingstudy_trainer.errors import ConfigError


@dataclass(frozen=True)
class TrialConfig:
    study: str
    namespace: str
    trial: str
    data_size: int
    model_size: int
    seed: int
    task: TaskSpec
    training: TrainingSpec
    metric: str
    result_file: str
    pushgateway: str
    checkpoint_dir: str


def env_int(env: Mapping[str, str], name: str, minimum: int, default: int | None = None) -> int:
    """The integer variable ``name``, at least ``minimum``; unset or empty means
    ``default`` (None: it must be set)."""
    raw = env.get(name, "") or ("" if default is None else str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer (got {raw!r})") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum} (got {value})")
    return value


def read_config(env: Mapping[str, str] | None = None) -> TrialConfig:
    """The SDK's reading of the contract (one implementation for every trainer), with
    the built-in trainer's stricter checks: the task must be given, sizes are positive,
    and the settings are the spec's typed models."""
    env = dict(os.environ if env is None else env)
    if not (env.get(contract.ENV_TASK) or env.get(contract.ENV_TASK_FILE)):
        raise ConfigError(
            f'{contract.ENV_TASK} is not set (the task as JSON, e.g. {{"name": "teacher-student"}})'
        )
    for name in (contract.ENV_DATA_SIZE, contract.ENV_MODEL_SIZE):
        env_int(env, name, 1)
    env_int(env, contract.ENV_SEED, 0, default=0)
    try:
        trial = Trial.from_env(env)
    except TrialError as exc:
        raise ConfigError(str(exc)) from None
    try:
        task = TaskSpec.model_validate(trial.task)
        training = TrainingSpec.model_validate(trial.training)
        if env.get(contract.ENV_LEARNING_RATE) and trial.learning_rate is not None:
            training = TrainingSpec.model_validate(
                {**training.model_dump(by_alias=True), "learningRate": trial.learning_rate}
            )
    except ValidationError as exc:
        raise ConfigError(str(SpecError(problems_of(exc)))) from None
    return TrialConfig(
        study=trial.study or "local",
        namespace=trial.namespace,
        trial=trial.name or "trial",
        data_size=trial.data_size,
        model_size=trial.model_size,
        seed=trial.seed,
        task=task,
        training=training,
        metric=trial.metric,
        result_file=env.get(contract.ENV_RESULT_FILE, ""),
        pushgateway=env.get(contract.ENV_PUSHGATEWAY, ""),
        checkpoint_dir=trial.checkpoint_dir or "",
    )
