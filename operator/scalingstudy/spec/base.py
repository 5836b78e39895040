"""What every part of the spec shares: the API names, limits, the model base and the
CEL-rule helper."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
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

#: The built-in trainer's tasks (``scalingstudy_trainer.tasks``; a test holds the two
#: equal), named here so a misspelt task name gets the nearest one without importing the
#: trainer (and torch) into the operator.
BUILTIN_TASKS: tuple[str, ...] = ("char-lm", "image-classification", "teacher-student")


class SpecError(ValueError):
    """A study file or object that cannot be used, with one readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class SpecModel(BaseModel):
    """Base: camelCase on the wire (as Kubernetes), unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry
