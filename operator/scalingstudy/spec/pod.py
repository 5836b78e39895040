"""The trainer pod of every trial: image, command, environment, resources and the
scheduling and storage a GPU cluster needs (Kubernetes names and semantics)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from scalingstudy.spec.base import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ENV_NAME,
    RESERVED_ENV_PREFIX,
    SpecModel,
    cel,
)

#: A name that becomes a label value (kueue.x-k8s.io/priority-class on every Job): a DNS
#: subdomain of at most 63 characters, the limit of a label value (a longer one passes a
#: 253-character name check and then every Job is refused with 422).
LabelValueName = Annotated[str, Field(max_length=63, pattern=DNS_SUBDOMAIN)]

# --------------------------------------------------------------------------- trainer pod


class EnvVar(SpecModel):
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


class Toleration(SpecModel):
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


class VolumeMount(SpecModel):
    """Where a volume from trainer.volumes appears in the trainer container."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    """Name of a volume in trainer.volumes."""
    mount_path: Annotated[str, Field(min_length=1, pattern=r"^/")]
    """Absolute path inside the container."""
    read_only: bool = False
    """Mount read-only."""
    sub_path: str | None = None
    """Mount only this path inside the volume."""


class ObjectName(SpecModel):
    """A reference to an object in the study's namespace by name."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
    """Object name."""


Quantity = int | Annotated[str, Field(pattern=r"^[0-9.+\-eEinumkKMGTP]+$")]
#: A Kubernetes label value (what the API server accepts in a nodeSelector).
LabelValue = Annotated[
    str, Field(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
]
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_CEL_LABEL_KEY = LABEL_KEY.replace("\\", "\\\\")  # a CEL string literal escapes "\\"
#: Names and paths the operator gives every trial pod (its /tmp, and the study's
#: ConfigMap with the task and training settings): a study cannot reuse them.
TMP_VOLUME = "scalingstudy-tmp"
TMP_PATH = "/tmp"
CONFIG_VOLUME = "scalingstudy-config"
CONFIG_PATH = "/etc/scalingstudy"
RESERVED_VOLUMES = (TMP_VOLUME, CONFIG_VOLUME)
RESERVED_MOUNT_PATHS = (TMP_PATH, CONFIG_PATH)
_CEL_VOLUMES = ", ".join(f"'{v}'" for v in RESERVED_VOLUMES)
_CEL_PATHS = ", ".join(f"'{p}', '{p}/'" for p in RESERVED_MOUNT_PATHS)


GPU = "nvidia.com/gpu"
#: Most pods one trial may span (spec.trainer.nodes), and trainer processes per pod.
MAX_NODES = 128
MAX_PROCESSES_PER_POD = 64


class Resources(SpecModel):
    """Compute resources of the trainer container, e.g. limits: {nvidia.com/gpu: 1}."""

    limits: dict[str, Quantity] = Field(default_factory=dict)
    """Maximum resources (cpu, memory, nvidia.com/gpu, ...)."""
    requests: dict[str, Quantity] = Field(default_factory=dict)
    """Resources the scheduler reserves."""

    def gpus(self) -> float:
        """GPUs of one pod: the nvidia.com/gpu limit (or request); 0 when none or unparsable."""
        raw = self.limits.get(GPU, self.requests.get(GPU, 0))
        try:
            return float(str(raw))
        except ValueError:
            return 0.0


class TrainerSpec(SpecModel):
    """The parts of every trial's pod that a user sets. The operator adds the rest:
    environment contract, security context, labels and owner references."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"!has(self.volumes) || self.volumes.all(v, !(v.name in [{_CEL_VOLUMES}]))",
                    f"volumes[].name: {' and '.join(RESERVED_VOLUMES)} are the operator's own "
                    "volumes",
                    ".volumes",
                ),
                cel(
                    "!has(self.volumeMounts) || "
                    f"self.volumeMounts.all(m, !(m.mountPath in [{_CEL_PATHS}]))",
                    f"volumeMounts[].mountPath: {TMP_PATH} is the trainer's own scratch space "
                    f"and {CONFIG_PATH} its settings",
                    ".volumeMounts",
                ),
            ]
        }
    )

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
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=64,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.all(k, k.matches('{_CEL_LABEL_KEY}'))",
                    "keys must be label keys: an optional DNS-subdomain prefix and '/', then "
                    "at most 63 letters, digits, '-', '_' or '.'",
                ),
            ]
        },
    )
    """Node labels the trial pods must match (label keys and values)."""
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
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 63, "description": "Volume name."}
                },
                "required": ["name"],
                "x-kubernetes-preserve-unknown-fields": True,
            }
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
    processes_per_pod: Annotated[int, Field(ge=1, le=MAX_PROCESSES_PER_POD)] | None = None
    """Trainer processes per pod, one per GPU: the built-in trainer starts them through
    torchrun (distributed data parallel; NCCL on GPUs, gloo on CPUs). Empty: the pod's
    nvidia.com/gpu limit, or 1. A custom trainer reads SCALINGSTUDY_PROCESSES_PER_POD."""
    nodes: Annotated[int, Field(ge=1, le=MAX_NODES)] = 1
    """Pods per trial. Above 1 each trial is an Indexed Job of this many pods that
    rendezvous through a headless Service on pod 0's stable hostname; the whole trial is
    admitted, fails and is retried as one, and its result is pod 0's. The local runner
    runs nodes x processesPerPod processes on its one machine."""
    termination_grace_period_seconds: Annotated[int, Field(ge=1, le=3600)] | None = None
    """Time a trial pod gets after SIGTERM (eviction, preemption) to save its checkpoint
    before it is killed; Kubernetes' default is 30 s. Raise it for models whose
    checkpoint takes longer to write."""

    def processes(self) -> int:
        """Trainer processes per pod: processesPerPod, else one per GPU, else 1."""
        if self.processes_per_pod is not None:
            return self.processes_per_pod
        return max(int(self.resources.gpus()), 1)

    @field_validator("node_selector")
    @classmethod
    def _label_keys(cls, selector: dict[str, str]) -> dict[str, str]:
        for key in selector:
            if not re.match(LABEL_KEY, key):
                raise ValueError(f"key {key!r} is not a label key")
        return selector

    @model_validator(mode="after")
    def _mounts_name_volumes(self) -> TrainerSpec:
        names = [str(v.get("name")) for v in self.volumes]
        for i, name in enumerate(names):
            if not re.match(DNS_LABEL, name):
                raise ValueError(f"volumes[{i}].name {name!r} must be a DNS label")
            if name in RESERVED_VOLUMES or name in names[:i]:
                what = "is the operator's own" if name in RESERVED_VOLUMES else "is used twice"
                raise ValueError(f"volumes[{i}].name {name!r} {what}")
        for i, mount in enumerate(self.volume_mounts):
            path = mount.mount_path.rstrip("/")
            if path in RESERVED_MOUNT_PATHS:
                what = "scratch space" if path == TMP_PATH else "settings (the study's ConfigMap)"
                raise ValueError(
                    f"volumeMounts[{i}].mountPath {path} is the trainer's own {what}; "
                    "mount elsewhere"
                )
        declared = set(names)
        for i, mount in enumerate(self.volume_mounts):
            if mount.name not in declared:
                raise ValueError(
                    f"volumeMounts[{i}].name {mount.name!r} names no entry of trainer.volumes"
                )
        return self
