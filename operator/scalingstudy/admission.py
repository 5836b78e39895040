"""What a study may make the operator do: no more than its author could do by hand.

The operator creates Jobs with its own service account, so without a check a user who
may create ScalingStudies, but not Jobs, would get pods with any volume, service account
or priority class (a confused deputy). Two layers enforce the same rules:

- a ValidatingAdmissionPolicy (generated here; `crds/admission-policy.yaml` and the
  chart's template) requires at `kubectl apply` that the author may create Jobs in the
  study's namespace (the CEL ``authorizer``), and refuses node-level volume types,
  service-account token projections and priority classes outside an allow-list;
- `violations()`, which the operator runs before creating any Job: the same allow-lists,
  for clusters without the policy (and in depth). It cannot check the author (the
  operator does not know who wrote the spec); only the policy can.

Trusted namespaces skip the allow-lists (not the author check).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scalingstudy.spec import API_VERSION, GROUP, PLURAL, VERSION, ScalingStudySpec

#: Volume types a study may use: storage and configuration, nothing on the node.
DEFAULT_VOLUME_TYPES = (
    "persistentVolumeClaim",
    "configMap",
    "secret",
    "emptyDir",
    "ephemeral",
    "csi",
    "projected",
)
POLICY_NAME = f"{PLURAL}.{GROUP}"


@dataclass(frozen=True)
class AdmissionRules:
    volume_types: tuple[str, ...] = DEFAULT_VOLUME_TYPES
    #: PriorityClasses a trial may name; none by default (system-node-critical and the
    #: like would let trials evict the cluster's own pods).
    priority_classes: tuple[str, ...] = ()
    service_account_tokens: bool = False
    trusted_namespaces: tuple[str, ...] = ()


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else "none"


def violations(spec: ScalingStudySpec, namespace: str, rules: AdmissionRules) -> list[str]:
    """One line per rule the spec breaks, naming the field (empty: allowed)."""
    if namespace in rules.trusted_namespaces:
        return []
    out = []
    for i, volume in enumerate(spec.trainer.volumes):
        for kind in (k for k in volume if k != "name" and k not in rules.volume_types):
            out.append(
                f"spec.trainer.volumes[{i}].{kind}: volume type {kind} is not allowed "
                f"(allowed: {_listed(rules.volume_types)})"
            )
        projected = volume.get("projected")
        sources = projected.get("sources") if isinstance(projected, dict) else None
        for j, source in enumerate(sources if isinstance(sources, list) else []):
            if not rules.service_account_tokens and "serviceAccountToken" in source:
                out.append(
                    f"spec.trainer.volumes[{i}].projected.sources[{j}].serviceAccountToken: "
                    "service-account token projections are not allowed"
                )
    for field, priority in (
        ("spec.trainer.priorityClassName", spec.trainer.priority_class_name),
        ("spec.workloadPriorityClassName", spec.workload_priority_class_name),
    ):
        if priority and priority not in rules.priority_classes:
            out.append(
                f"{field}: {priority!r} is not an allowed priority class "
                f"(allowed: {_listed(rules.priority_classes)})"
            )
    return out


# -- the ValidatingAdmissionPolicy --------------------------------------------------------

_TRAINER = "has(object.spec.trainer)"
_VOLUMES = f"{_TRAINER} && has(object.spec.trainer.volumes)"


@dataclass(frozen=True)
class PolicyValues:
    """CEL list literals (or Helm expressions that render to them) for the allow-lists."""

    volume_types: str
    priority_classes: str
    service_account_tokens: str
    trusted_namespaces: str
    #: The binding's namespaceSelector (None: every namespace).
    namespace_selector: Any = None


def _cel_list(values: tuple[str, ...]) -> str:
    """A CEL list literal, spelled as Helm's toJson spells it (so both outputs agree)."""
    return json.dumps(list(values), separators=(",", ":"))


def default_values(rules: AdmissionRules | None = None) -> PolicyValues:
    rules = rules or AdmissionRules()
    return PolicyValues(
        volume_types=_cel_list(rules.volume_types),
        priority_classes=_cel_list(rules.priority_classes),
        service_account_tokens="true" if rules.service_account_tokens else "false",
        trusted_namespaces=_cel_list(rules.trusted_namespaces),
    )


def policy(values: PolicyValues) -> list[dict[str, Any]]:
    """The policy and its binding."""
    unless_trusted = "variables.trusted || "
    validations = [
        {
            "expression": (
                "authorizer.group('batch').resource('jobs').namespace(request.namespace)"
                ".check('create').allowed()"
            ),
            "messageExpression": (
                "'a ScalingStudy can do no more than its author: ' + request.userInfo.username"
                " + ' may not create Jobs in namespace ' + request.namespace"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": unless_trusted + f"!({_VOLUMES}) || object.spec.trainer.volumes.all("
            "v, v.all(k, k == 'name' || k in variables.volumeTypes))",
            "messageExpression": (
                "'spec.trainer.volumes: volume types allowed are ' + "
                "variables.volumeTypes.join(', ') + ' (node-level volumes such as hostPath "
                "are refused)'"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": unless_trusted + "variables.serviceAccountTokens || "
            f"!({_VOLUMES}) || object.spec.trainer.volumes.all(v, !has(v.projected) || "
            "!has(v.projected.sources) || v.projected.sources.all(s, "
            "!has(s.serviceAccountToken)))",
            "message": (
                "spec.trainer.volumes[].projected.sources[].serviceAccountToken: "
                "service-account token projections are not allowed"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": unless_trusted + f"!({_TRAINER} && has(object.spec.trainer."
            "priorityClassName)) || object.spec.trainer.priorityClassName in "
            "variables.priorityClasses",
            "messageExpression": (
                "'spec.trainer.priorityClassName: ' + object.spec.trainer.priorityClassName"
                " + ' is not an allowed priority class (allowed: ' + "
                "(variables.priorityClasses.size() == 0 ? 'none' : "
                "variables.priorityClasses.join(', ')) + ')'"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": unless_trusted + "!has(object.spec.workloadPriorityClassName) || "
            "object.spec.workloadPriorityClassName in variables.priorityClasses",
            "messageExpression": (
                "'spec.workloadPriorityClassName: ' + object.spec.workloadPriorityClassName"
                " + ' is not an allowed priority class (allowed: ' + "
                "(variables.priorityClasses.size() == 0 ? 'none' : "
                "variables.priorityClasses.join(', ')) + ')'"
            ),
            "reason": "Forbidden",
        },
    ]
    spec: dict[str, Any] = {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": [GROUP],
                    "apiVersions": [VERSION],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [PLURAL],
                }
            ]
        },
        "variables": [
            {"name": "volumeTypes", "expression": values.volume_types},
            {"name": "priorityClasses", "expression": values.priority_classes},
            {"name": "serviceAccountTokens", "expression": values.service_account_tokens},
            {
                "name": "trusted",
                "expression": f"request.namespace in {values.trusted_namespaces}",
            },
        ],
        "validations": validations,
    }
    binding: dict[str, Any] = {"policyName": POLICY_NAME, "validationActions": ["Deny"]}
    if values.namespace_selector is not None:
        binding["matchResources"] = {"namespaceSelector": values.namespace_selector}
    kind = "admissionregistration.k8s.io/v1"
    return [
        {
            "apiVersion": kind,
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": POLICY_NAME},
            "spec": spec,
        },
        {
            "apiVersion": kind,
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": POLICY_NAME},
            "spec": binding,
        },
    ]


_HEADER = (
    "# Generated by `scalingstudy admission-policy{flag}` (operator/scalingstudy/admission.py).\n"
    f"# A {API_VERSION} ScalingStudy can do no more than its author: see the README's\n"
    "# security section. Do not edit: change the generator and regenerate.\n"
)


def _dump(docs: list[dict[str, Any]]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(d, sort_keys=False, width=100) for d in docs)


def policy_yaml() -> str:
    """The plain manifests beside the CRD (`kubectl apply -f crds/`), default rules."""
    return _HEADER.format(flag="") + _dump(policy(default_values()))


#: Placeholders in the chart's template -> the Helm expression that renders the value
#: (a JSON string: valid YAML whatever the list holds).
_HELM = {
    "__VOLUME_TYPES__": "{{ .Values.admission.allowedVolumeTypes | toJson | toJson }}",
    "__PRIORITY_CLASSES__": "{{ .Values.admission.allowedPriorityClasses | toJson | toJson }}",
    "__TOKENS__": "{{ .Values.admission.allowServiceAccountTokens | toJson | toJson }}",
    "request.namespace in __TRUSTED__": (
        '{{ printf "request.namespace in %s" (toJson .Values.admission.trustedNamespaces)'
        " | toJson }}"
    ),
}


def chart_template() -> str:
    """The chart's templates/admission-policy.yaml: the same documents, allow-lists from
    the chart's values."""
    placeholders = PolicyValues("__VOLUME_TYPES__", "__PRIORITY_CLASSES__", "__TOKENS__",
                                "__TRUSTED__")  # fmt: skip
    text = _dump(policy(placeholders))
    for placeholder, expression in _HELM.items():
        text = text.replace(f"expression: {placeholder}\n", f"expression: {expression}\n")
    if "__" in text:
        raise AssertionError("a placeholder of the chart template was not replaced")
    header = "".join(
        f"{{{{/* {line[2:]} */}}}}\n" for line in _HEADER.format(flag=" --helm").splitlines()
    )
    return f"{header}{{{{- if .Values.admission.enabled }}}}\n{text}{{{{- end }}}}\n"
