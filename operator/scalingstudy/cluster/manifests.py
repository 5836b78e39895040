"""The Job of one trial, as a plain manifest. Pure: study, trial and settings in, dict out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scalingstudy.contract import (
    ENV_METRICS_PORT,
    ENV_NODE_RANK,
    EXIT_CONFIG_ERROR,
    MASTER_PORT,
)
from scalingstudy.planning.plan import Trial
from scalingstudy.spec import API_VERSION, GROUP, KIND, ScalingStudySpec
from scalingstudy.spec.pod import CONFIG_PATH, CONFIG_VOLUME, TMP_PATH, TMP_VOLUME
from scalingstudy.trial_env import Topology, trial_config, trial_environment

#: A Kubernetes object as JSON: what the API returns and what the pure core builds.
Obj = dict[str, Any]

LABEL_STUDY = f"{GROUP}/study"
LABEL_TRIAL = f"{GROUP}/trial"
LABEL_DATA_SIZE = f"{GROUP}/data-size"
LABEL_MODEL_SIZE = f"{GROUP}/model-size"
LABEL_SEED = f"{GROUP}/seed"
LABEL_LEARNING_RATE = f"{GROUP}/learning-rate"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "scalingstudy-operator"
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY = "kueue.x-k8s.io/priority-class"

#: The Job controller's annotation of each pod of an Indexed Job: its index.
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
RENDEZVOUS_PORT_NAME = "rendezvous"

CONTAINER = "trainer"
#: The kubelet mounts a writable file here even on a read-only root filesystem.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
DEFAULT_COMMAND = ("scalingstudy-trainer",)


@dataclass(frozen=True)
class StudyRef:
    """What a Job needs to know of its study: identity for names, labels and ownership."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class JobSettings:
    """Operator-wide settings that shape every Job (flags of `scalingstudy operator`)."""

    trainer_image: str = "scalingstudy/trainer:0.1.0"
    pushgateway_url: str = ""
    run_as_user: int = 1000
    #: The trainer's /metrics port (declared as container port `metrics`); 0: none.
    metrics_port: int = 9090


def trial_labels(study: str, trial: Trial) -> dict[str, str]:
    labels = {
        LABEL_STUDY: study,
        LABEL_TRIAL: trial.name,
        LABEL_DATA_SIZE: str(trial.data_size),
        LABEL_MODEL_SIZE: str(trial.model_size),
        LABEL_SEED: str(trial.seed),
        LABEL_MANAGED_BY: MANAGER,
    }
    if trial.learning_rate is not None:
        labels[LABEL_LEARNING_RATE] = repr(trial.learning_rate)  # e.g. 0.003, 1e-05
    return labels


def owner_reference(study: StudyRef) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": study.name,
        "uid": study.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _env_var(name: str, value: str, nodes: int) -> dict[str, Any]:
    """A contract variable; the node rank of a pod of several is its completion index."""
    if name == ENV_NODE_RANK and nodes > 1:
        path = f"metadata.annotations['{COMPLETION_INDEX}']"
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
    return {"name": name, "value": value}


def topology(spec: ScalingStudySpec, trial: Trial) -> Topology:
    """Pods and processes of a trial; several pods meet at pod 0's stable hostname."""
    nodes = spec.trainer.nodes
    master = f"{trial.name}-0.{service_name(trial)}" if nodes > 1 else "127.0.0.1"
    return Topology(nodes, spec.trainer.processes(), master, MASTER_PORT)


def service_name(trial: Trial) -> str:
    """The headless Service of a trial of several pods (their DNS subdomain)."""
    return trial.name


def _container(
    spec: ScalingStudySpec, env: dict[str, str], image: str, metrics_port: int
) -> dict[str, Any]:
    trainer = spec.trainer
    dump = {"by_alias": True, "exclude_none": True, "mode": "json"}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": trainer.image or image,
        "command": list(trainer.command or DEFAULT_COMMAND),
        "env": [_env_var(k, v, trainer.nodes) for k, v in env.items()]
        + [e.model_dump(**dump) for e in trainer.env],  # type: ignore[arg-type]
        "resources": trainer.resources.model_dump(**dump),  # type: ignore[arg-type]
        "volumeMounts": [
            m.model_dump(**dump)  # type: ignore[arg-type]
            for m in trainer.volume_mounts
        ]
        + [
            {"name": TMP_VOLUME, "mountPath": TMP_PATH},
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_PATH, "readOnly": True},
        ],
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        # A trainer that dies before writing its result still leaves the log tail there.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if trainer.args:
        container["args"] = list(trainer.args)
    if metrics_port:
        container["ports"] = [{"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"}]
    if trainer.image_pull_policy:
        container["imagePullPolicy"] = trainer.image_pull_policy
    return container


def _pod_spec(
    spec: ScalingStudySpec, container: dict[str, Any], uid: int, config_map: str
) -> dict[str, Any]:
    trainer = spec.trainer
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [
            *trainer.volumes,
            {"name": TMP_VOLUME, "emptyDir": {}},
            {"name": CONFIG_VOLUME, "configMap": {"name": config_map}},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "enableServiceLinks": False,
        # A trainer talks to no API: a token only for a service account the study names.
        "automountServiceAccountToken": bool(trainer.service_account_name),
    }
    if trainer.node_selector:
        pod["nodeSelector"] = dict(trainer.node_selector)
    if trainer.tolerations:
        pod["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in trainer.tolerations
        ]
    if trainer.affinity:
        pod["affinity"] = trainer.affinity
    if trainer.service_account_name:
        pod["serviceAccountName"] = trainer.service_account_name
    if trainer.priority_class_name:
        pod["priorityClassName"] = trainer.priority_class_name
    if trainer.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s.name} for s in trainer.image_pull_secrets]
    if trainer.termination_grace_period_seconds:
        pod["terminationGracePeriodSeconds"] = trainer.termination_grace_period_seconds
    return pod


def job_manifest(
    study: StudyRef, spec: ScalingStudySpec, trial: Trial, settings: JobSettings
) -> dict[str, Any]:
    """The trial's Job: deterministic name, labels, controller ownerReference, contract env.

    Disruptions (eviction, preemption: the DisruptionTarget pod condition) do not count
    against backoffLimit; the trainer's configuration-error exit code fails the Job at once.
    With a Kueue queue the Job starts suspended and Kueue alone un-suspends it (all pods
    of a trial are one workload, admitted together).

    A trial of several pods is an Indexed Job: pod i has node rank i and hostname
    `<trial>-i` in the subdomain of the trial's headless Service. It succeeds when pod 0
    (global rank 0, which reports) does; a pod that fails makes its peers' collectives
    fail too, so the Job controller replaces them all and the retry starts over together,
    which is why the retry budget is backoffLimit per pod.
    """
    env = trial_environment(
        study.name,
        study.namespace,
        trial,
        spec,
        result_file=TERMINATION_MESSAGE_PATH,
        pushgateway=settings.pushgateway_url,
        checkpoint_dir=_checkpoint_dir(spec, trial),
        config_dir=CONFIG_PATH,
        topology=topology(spec, trial),
    )
    if settings.metrics_port:
        env[ENV_METRICS_PORT] = str(settings.metrics_port)
    labels = trial_labels(study.name, trial)
    job_labels = dict(labels)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE] = spec.queue_name
        if spec.workload_priority_class_name:
            job_labels[KUEUE_PRIORITY] = spec.workload_priority_class_name
    nodes = spec.trainer.nodes
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.trainer.backoff_limit * nodes,
        "completions": nodes,
        "parallelism": nodes,
        "podFailurePolicy": {
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [EXIT_CONFIG_ERROR],
                    },
                },
            ]
        },
        "template": {
            "metadata": {"labels": labels},
            "spec": _pod_spec(
                spec,
                _container(spec, env, settings.trainer_image, settings.metrics_port),
                settings.run_as_user,
                config_map_name(study.name),
            ),
        },
    }
    if nodes > 1:
        job_spec["completionMode"] = "Indexed"
        job_spec["successPolicy"] = {"rules": [{"succeededIndexes": "0"}]}
        job_spec["template"]["spec"]["subdomain"] = service_name(trial)
    if spec.trainer.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.trainer.active_deadline_seconds
    if spec.queue_name:
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": trial.name,
            "namespace": study.namespace,
            "labels": job_labels,
            "ownerReferences": [owner_reference(study)],
        },
        "spec": job_spec,
    }


def service_manifest(study: StudyRef, trial: Trial) -> dict[str, Any]:
    """The headless Service of a trial of several pods: DNS names for its pods (ready or
    not: they must find pod 0 before any is ready), for the rendezvous on pod 0. Owned by
    the study, created before the Job, deleted once the trial's result is recorded."""
    selector = {LABEL_STUDY: study.name, LABEL_TRIAL: trial.name}
    port = {"name": RENDEZVOUS_PORT_NAME, "port": MASTER_PORT, "protocol": "TCP"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(trial),
            "namespace": study.namespace,
            "labels": {**selector, LABEL_MANAGED_BY: MANAGER},
            "ownerReferences": [owner_reference(study)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [port],
        },
    }


def config_map_name(study: str) -> str:
    return f"{study}-trial-config"


def config_map_manifest(study: StudyRef, spec: ScalingStudySpec) -> dict[str, Any]:
    """The study's ConfigMap: the task and training settings every trial reads, once per
    study instead of in every Job's environment (a Job then stays small whatever the
    spec's size). Owned by the study, so it goes with it; task and training are
    immutable, so it never changes."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(study.name),
            "namespace": study.namespace,
            "labels": {LABEL_STUDY: study.name, LABEL_MANAGED_BY: MANAGER},
            "ownerReferences": [owner_reference(study)],
        },
        "data": trial_config(spec),
    }


def config_map_owner(existing: Obj, study: StudyRef) -> str:
    """Whose the ConfigMap of the study's name is: "ours"; "previous" (a deleted study of
    the same name, garbage collection has not removed it yet: wait); "foreign" (not a
    study's: the operator will not overwrite it)."""
    owners = existing.get("metadata", {}).get("ownerReferences") or []
    if any(o.get("uid") == study.uid for o in owners):
        return "ours"
    if any(o.get("kind") == KIND and o.get("apiVersion") == API_VERSION for o in owners):
        return "previous"
    return "foreign"


def _checkpoint_dir(spec: ScalingStudySpec, trial: Trial) -> str:
    """A mount named `checkpoints` (a PVC, so it outlives the pod) holds per-trial folders;
    without one the trainer checkpoints nowhere and a retry starts over."""
    for mount in spec.trainer.volume_mounts:
        if mount.name == "checkpoints":
            return f"{mount.mount_path.rstrip('/')}/{trial.name}"
    return ""
