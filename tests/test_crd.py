"""The committed CRD is what the models generate, and it is a structural schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from scalingstudy.crd import crd, crd_yaml

COMMITTED = Path(__file__).resolve().parents[1] / "crds" / "scalingstudies.yaml"


def test_committed_crd_is_up_to_date() -> None:
    assert COMMITTED.read_text() == crd_yaml(), (
        "crds/scalingstudies.yaml is stale: run `scalingstudy crd > crds/scalingstudies.yaml`"
    )


def _walk(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        out += _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        out += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += _walk(schema["additionalProperties"], f"{path}{{}}")
    return out


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_every_field_has_a_description() -> None:
    missing = [
        path
        for path, node in _walk(_schema(), "")
        if path
        and not path.endswith(("[]", "{}"))
        and not node.get("description")
        # The API server forbids anything but type on metadata (it documents it itself).
        and path != ".metadata"
    ]
    assert not missing, f"fields without description (kubectl explain shows nothing): {missing}"


def test_schema_is_structural() -> None:
    """No constructs a structural schema forbids; every node has a type (or int-or-string)."""
    for path, node in _walk(_schema(), "spec"):
        for key in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title", "const"):
            assert key not in node, f"{path}: {key}"
        assert node.get("additionalProperties") is not False, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        assert not isinstance(node.get("exclusiveMinimum"), int | float) or isinstance(
            node.get("exclusiveMinimum"), bool
        ), path


def test_printer_columns_and_status_subresource() -> None:
    version = crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Trials"] == ".status.progress"
    assert columns["BetaG"] == ".status.fit.learningCurve.beta"
    assert columns["BetaP"] == ".status.fit.modelSize.beta"
    assert columns["Age"] == ".metadata.creationTimestamp"
    # every column path exists in the schema
    paths = {p for p, _ in _walk(_schema(), "")}
    for path in columns.values():
        assert path in paths or path.startswith(".metadata"), path


def test_cross_field_rules_are_cel() -> None:
    spec = _schema()["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "self.task == oldSelf.task" in rules
    grid_rules = [r["rule"] for r in spec["properties"]["dataSizes"]["x-kubernetes-validations"]]
    assert any("self.min < self.max" in r for r in grid_rules)
    assert spec["properties"]["dataSizes"]["properties"]["factor"]["exclusiveMinimum"] is True


def test_crd_command_prints_the_yaml() -> None:
    from tests.conftest import run_cli

    out = run_cli("crd")
    assert out.returncode == 0
    assert yaml.safe_load(out.stdout)["kind"] == "CustomResourceDefinition"
