"""The CustomResourceDefinition, generated from the pydantic models.

pydantic emits JSON Schema (2020-12 flavour, with $refs); Kubernetes wants a
structural OpenAPI v3.0 schema: everything inlined, no anyOf for optionals,
int-or-string and preserve-unknown-fields markers, boolean exclusiveMinimum.
This module is that translation and nothing else.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from scalingstudy.spec import (
    API_VERSION,
    DNS_LABEL,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ScalingStudySpec,
)
from scalingstudy.status import ScalingStudyStatus

Schema = dict[str, Any]

_DROP = {"title", "$defs", "const", "discriminator"}


def _resolve(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """Inline $ref/allOf-of-one and collapse Optional[X] to X, keeping sibling keys."""
    schema = dict(schema)
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema.pop("$ref").split("/")[-1]])
        target.update({k: v for k, v in schema.items() if k in {"description", "default"}})
        schema = target
    if "allOf" in schema and len(schema["allOf"]) == 1:
        inner = _resolve(schema.pop("allOf")[0], defs)
        inner.update(schema)
        schema = inner
    if "anyOf" in schema:
        options = [o for o in schema.pop("anyOf") if o.get("type") != "null"]
        types = sorted(o.get("type", "") for o in options)
        if len(options) == 1:
            inner = _resolve(options[0], defs)
            if "description" in inner and "description" in schema:
                inner.pop("description")
            inner.update(schema)
            schema = inner
        elif types == ["integer", "string"]:
            schema["x-kubernetes-int-or-string"] = True
        elif types == ["integer", "number"]:
            schema["type"] = "number"  # int | float: a whole number stays an int in JSON
        else:  # pragma: no cover - a model change the translation does not know yet
            raise ValueError(f"cannot express anyOf {options} in a structural schema")
    if schema.get("default", 0) is None:
        schema.pop("default")
    return schema


def _materialised_default(prop: Schema) -> dict[str, Any]:
    """An object's default with every nested default filled in: the API server checks a
    default against the CEL rules as written, without defaulting inside it first."""
    out: dict[str, Any] = {}
    for name, sub in prop.get("properties", {}).items():
        if "default" in sub:
            out[name] = sub["default"]
    return out


def _element(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """A list item or map value. A null there is kept, not pruned as a null field is: the
    schema must allow it (an interval end that may be unbounded)."""
    out = structural(schema, defs)
    if any(o.get("type") == "null" for o in schema.get("anyOf", [])):
        out["nullable"] = True
    return out


def structural(schema: Schema, defs: dict[str, Schema]) -> Schema:
    schema = _resolve(schema, defs)
    out: Schema = {}
    for key, value in schema.items():
        if key == "const":
            out["enum"] = [value]  # a one-value Literal: structural schemas have no const
            continue
        if key in _DROP:
            continue
        if key == "properties":
            required = set(schema.get("required", []))
            props = {}
            for name, sub in value.items():
                prop = structural(sub, defs)
                if (
                    name not in required
                    and prop.get("type") == "object"
                    and "properties" in prop
                    and "default" not in prop
                    and not prop.get("_optional")
                ):
                    prop["default"] = _materialised_default(prop)
                prop.pop("_optional", None)
                props[name] = prop
            out["properties"] = props
        elif key == "items":
            out["items"] = _element(value, defs)
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = _element(value, defs)
            # False: structural schemas prune unknown fields instead.
        elif key in {"exclusiveMinimum", "exclusiveMaximum"} and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "maxLength" and schema.get("type") == "array":
            out["maxItems"] = value
        elif key == "minLength" and schema.get("type") == "array":
            out["minItems"] = value
        else:
            out[key] = value
    if "description" in out:
        out["description"] = " ".join(str(out["description"]).split())
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "object"
    if "x-kubernetes-int-or-string" in out:
        out.pop("type", None)
    first = [k for k in ("description", "type") if k in out]
    return {k: out[k] for k in [*first, *sorted(k for k in out if k not in first)]}


def _optional_models(schema: Schema) -> None:
    """Mark Optional[Model] fields (default None) so they get no empty-object default."""
    for defn in schema.get("$defs", {}).values():
        for prop in defn.get("properties", {}).values():
            if "anyOf" in prop and prop.get("default", 0) is None:
                prop["_optional"] = True


def model_schema(model: type[Any]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    _optional_models(raw)
    for prop in raw.get("properties", {}).values():
        if "anyOf" in prop and prop.get("default", 0) is None:
            prop["_optional"] = True
    defs = raw.get("$defs", {})
    return structural(raw, defs)


def _mark_sets(schema: Schema) -> None:
    """Size lists must not repeat: a list-type set makes the API server check it."""
    grid_values = schema["properties"]["spec"]["properties"]
    for name in ("dataSizes", "modelSizes"):
        grid_values[name]["properties"]["values"]["x-kubernetes-list-type"] = "set"
    grid_values["fit"]["properties"]["predictAt"]["x-kubernetes-list-type"] = "set"


def openapi_schema() -> Schema:
    spec = model_schema(ScalingStudySpec)
    spec.pop("default", None)
    status = model_schema(ScalingStudyStatus)
    schema: Schema = {
        "type": "object",
        "description": "A scaling study: trains a model family on nested, geometrically growing "
        "data subsets and fits the power laws of Hestness et al. (2017).",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.metadata.name.size() <= 63",
                "message": "metadata.name must be at most 63 characters: it labels the "
                "study's Jobs and prefixes its trial names",
            },
            {
                "rule": f"self.metadata.name.matches('{DNS_LABEL}')",
                "message": "metadata.name must be a DNS label: lower-case letters, digits "
                "and '-', starting and ending with a letter or digit",
            },
        ],
    }
    _mark_sets(schema)
    return schema


PRINTER_COLUMNS = [
    {
        "name": "Phase",
        "type": "string",
        "jsonPath": ".status.phase",
        "description": "Pending, Running, Fitting, Succeeded or Failed",
    },
    {
        "name": "Trials",
        "type": "string",
        "jsonPath": ".status.progress",
        "description": "Finished/total trials",
    },
    {
        "name": "Running",
        "type": "integer",
        "jsonPath": ".status.trials.running",
        "description": "Trials whose Jobs run (admitted)",
    },
    {
        "name": "Queued",
        "type": "integer",
        "jsonPath": ".status.trials.queued",
        "description": "Trials whose Jobs wait for admission (Kueue)",
    },
    {
        "name": "BetaG",
        "type": "number",
        "jsonPath": ".status.fit.learningCurve.beta",
        "description": "Learning-curve exponent",
    },
    {
        "name": "BetaP",
        "type": "number",
        "jsonPath": ".status.fit.modelSize.beta",
        "description": "Model-size exponent",
    },
    {
        "name": "Spend",
        "type": "string",
        "jsonPath": ".status.design.spend",
        "description": "Device-seconds spent over the full grid's estimate",
    },
    {
        "name": "Task",
        "type": "string",
        "jsonPath": ".spec.task.name",
        "priority": 1,
        "description": "Task",
    },
    {
        "name": "Gamma",
        "type": "number",
        "jsonPath": ".status.fit.learningCurve.gamma",
        "priority": 1,
        "description": "Fitted irreducible error",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["sst"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = (
        "# Generated by `scalingstudy crd` from the pydantic models in operator/scalingstudy/"
        "spec.py and status.py.\n# Do not edit: change the models and regenerate "
        f"(apiVersion {API_VERSION}).\n"
    )
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)
