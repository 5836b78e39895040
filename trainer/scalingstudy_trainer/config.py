"""The trial's configuration, read from the trainer contract's environment (DESIGN §5)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scalingstudy import contract
from scalingstudy.spec import SpecError, TaskSpec, TrainingSpec, problems_of
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


def _float(env: Mapping[str, str], name: str) -> float:
    try:
        return float(env[name])
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {env[name]!r})") from None


def _json(env: Mapping[str, str], name: str, default: Any) -> Any:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} is not valid JSON: {exc.msg}") from None


def _from_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """The environment with the task and training settings read from the files the
    _FILE variables name (the study's ConfigMap on a cluster)."""
    out = dict(env)
    for inline, named in (
        (contract.ENV_TASK, contract.ENV_TASK_FILE),
        (contract.ENV_TRAINING, contract.ENV_TRAINING_FILE),
    ):
        path = env.get(named, "")
        if not path:
            continue
        try:
            out[inline] = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{named}: cannot read {path}: {exc}") from None
    return out


def read_config(env: Mapping[str, str] | None = None) -> TrialConfig:
    env = _from_files(os.environ if env is None else env)
    if not env.get(contract.ENV_TASK):
        raise ConfigError(
            f'{contract.ENV_TASK} is not set (the task as JSON, e.g. {{"name": "teacher-student"}})'
        )
    try:
        task = TaskSpec.model_validate(_json(env, contract.ENV_TASK, {}))
        training = TrainingSpec.model_validate(_json(env, contract.ENV_TRAINING, {}))
        if env.get(contract.ENV_LEARNING_RATE):
            training = TrainingSpec.model_validate(
                {**training.model_dump(by_alias=True),
                 "learningRate": _float(env, contract.ENV_LEARNING_RATE)}
            )  # fmt: skip
    except ValidationError as exc:
        raise ConfigError(str(SpecError(problems_of(exc)))) from None
    return TrialConfig(
        study=env.get(contract.ENV_STUDY, "local"),
        namespace=env.get(contract.ENV_NAMESPACE, ""),
        trial=env.get(contract.ENV_TRIAL, "trial"),
        data_size=env_int(env, contract.ENV_DATA_SIZE, 1),
        model_size=env_int(env, contract.ENV_MODEL_SIZE, 1),
        seed=env_int(env, contract.ENV_SEED, 0),
        task=task,
        training=training,
        metric=env.get(contract.ENV_METRIC, "validation_loss") or "validation_loss",
        result_file=env.get(contract.ENV_RESULT_FILE, ""),
        pushgateway=env.get(contract.ENV_PUSHGATEWAY, ""),
        checkpoint_dir=env.get(contract.ENV_CHECKPOINT_DIR, ""),
    )
