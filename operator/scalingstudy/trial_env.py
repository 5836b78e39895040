"""The executor's half of the trainer contract: the environment and settings one trial
gets, the same for a pod and a local process (`contract.py` holds the names and the
result a trainer needs, and imports nothing of the study's plan or spec)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from scalingstudy.contract import (
    ENV_CHECKPOINT_DIR,
    ENV_DATA_SIZE,
    ENV_LEARNING_RATE,
    ENV_MASTER_ADDR,
    ENV_MASTER_PORT,
    ENV_METRIC,
    ENV_MODEL_SIZE,
    ENV_NAMESPACE,
    ENV_NODE_RANK,
    ENV_NODES,
    ENV_PROCESSES_PER_POD,
    ENV_PUSHGATEWAY,
    ENV_RESULT_FILE,
    ENV_SEED,
    ENV_STUDY,
    ENV_TASK,
    ENV_TASK_FILE,
    ENV_TRAINING,
    ENV_TRAINING_FILE,
    ENV_TRIAL,
    MASTER_PORT,
    TASK_KEY,
    TRAINING_KEY,
)
from scalingstudy.planning.plan import Trial
from scalingstudy.spec import ScalingStudySpec


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
