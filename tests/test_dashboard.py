"""The Grafana dashboard and alert rules: every query parses (promtool, from Debian's
prometheus package) and names only metrics this project exports; the dashboard decodes
strictly under Grafana's own schema and passes Grafana's dashboard-linter rules
(grafana-check: tests/tools/grafana_check, built by scripts/testbin-grafana against the
Grafana Foundation SDK; Grafana itself is not used)."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.contract import TRIAL_GAUGES
from scalingstudy_sdk.contract import CURVE_GAUGE
from tests.conftest import ROOT

CHART = ROOT / "charts" / "scalingstudy"
DASHBOARD = json.loads((CHART / "dashboards" / "scalingstudy.json").read_text())
# Grafana's variables, replaced by values of the right type before parsing.
VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$namespace": "ml", "$study": "demo"}
FOREIGN = {"up", "time"}  # Prometheus' own


def exported_metrics() -> set[str]:
    names = {*TRIAL_GAUGES.values(), CURVE_GAUGE}
    for family in OperatorMetrics().registry.collect():
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
    # Histograms expose _bucket/_sum/_count; counters _total (collect() lists them once used).
    for name in list(names):
        names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_total"})
    return names


def panel_queries() -> list[str]:
    queries = [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]
    for var in DASHBOARD["templating"]["list"]:
        if var["type"] == "query":
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["definition"])
            assert inner, var["definition"]
            queries.append(inner.group(1))
    return queries


def substitute(expr: str) -> str:
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, expr
    return expr


def promtool_check(rules: dict[str, Any], tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool missing: scripts/testbin installs Debian's prometheus package")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    words = set(
        re.findall(
            r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?=\s*(?:\{|\)|$|\s|==|>|<|/|\*|\+|-))", without_ranges
        )
    )
    return {w for w in words if w.startswith("scalingstudy_") or w in FOREIGN}


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = panel_queries()
    assert len(queries) >= 12
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": substitute(q)} for i, q in enumerate(queries)
    ]}]}  # fmt: skip
    promtool_check(rules, tmp_path)


def test_dashboard_uses_only_exported_metrics() -> None:
    known = exported_metrics() | FOREIGN
    used = set().union(*(metric_names(substitute(q)) for q in panel_queries()))
    assert {"scalingstudy_trials", "scalingstudy_fit_beta_g", "scalingstudy_fit_beta_p"} <= used
    assert used <= known, used - known


def test_dashboard_has_the_promised_panels() -> None:
    titles = " | ".join(p["title"].lower() for p in DASHBOARD["panels"])
    for words in ("trials by state", "validation loss vs data size", "beta_g over time",
                  "beta_p over time", "trial duration", "device-hours", "operator",
                  "running trials (live curves)", "validation loss vs step", "budget"):  # fmt: skip
        assert words in titles, words
    names = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert {"namespace", "study"} <= names
    loss = next(p for p in DASHBOARD["panels"] if p["type"] == "xychart")
    assert loss["fieldConfig"]["defaults"]["custom"]["scaleDistribution"]["type"] == "log"


def test_alert_rules_parse_and_use_exported_metrics(tmp_path: Path) -> None:
    text = (CHART / "files" / "alerts.yaml").read_text().replace("STALLED_FOR", "2h")
    rules = yaml.safe_load(text)
    promtool_check(rules, tmp_path)
    known = exported_metrics() | FOREIGN
    for rule in rules["groups"][0]["rules"]:
        assert metric_names(rule["expr"]) <= known, rule["alert"]


@functools.cache
def grafana_check_binary() -> str:
    """scripts/testbin-grafana builds the checker once (cached), then only prints its path."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "testbin-grafana")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.fail(f"scripts/testbin-grafana failed: {out.stderr}")
    return out.stdout.strip()


def grafana_check(dashboard: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The checker's report on ``dashboard``: its findings and the panels it decoded."""
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(dashboard))
    out = subprocess.run(
        [grafana_check_binary(), str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def findings(report: dict[str, Any], rule: str | None = None) -> list[str]:
    return [
        f"{f['rule']}: {f['where']}: {f['message']}"
        for f in report["findings"]
        if rule is None or f["rule"] == rule
    ]


def test_dashboard_decodes_strictly_under_grafanas_schema(tmp_path: Path) -> None:
    """Every field known to the panel type's schema and of its type; every required one
    present; every Prometheus target decoded as a Prometheus query."""
    report = grafana_check(DASHBOARD, tmp_path)
    assert findings(report, "strict-decode") + findings(report, "validate") == []
    decoded = {p["id"]: p for p in report["panels"]}
    assert len(decoded) == len(DASHBOARD["panels"]) == 17
    for panel in DASHBOARD["panels"]:
        mine = decoded[panel["id"]]
        assert (mine["type"], mine["title"]) == (panel["type"], panel["title"])
        assert [t["expr"] for t in mine["targets"]] == [t["expr"] for t in panel["targets"]]


def test_dashboard_passes_grafanas_lint_rules(tmp_path: Path) -> None:
    report = grafana_check(DASHBOARD, tmp_path)
    assert findings(report) == []
    assert {
        "panel-title-description-rule", "panel-units-rule", "target-promql-rule",
        "target-rate-interval-rule", "target-counter-agg-rule", "panel-datasource-rule",
        "template-datasource-rule", "uneditable-dashboard",
    } <= set(report["rules"])  # fmt: skip
    assert all(p["unit"] for p in report["panels"])


def mutated(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    dashboard: dict[str, Any] = copy.deepcopy(DASHBOARD)
    change(dashboard)
    return dashboard


def panel(dashboard: dict[str, Any], title_start: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        p for p in dashboard["panels"] if p["title"].startswith(title_start)
    )
    return found


BROKEN_SCHEMA: dict[str, Callable[[dict[str, Any]], object]] = {
    # an unknown panel field, a misspelt option, a mistyped one, a misspelt standard field
    # option, an xychart in the options Grafana 11 replaced, a required option missing
    "panels[0]": lambda d: d["panels"][0].update(titel="Phase"),
    "options.legend": lambda d: panel(d, "Trials by state")["options"]["legend"].update(
        placment="bottom"
    ),
    "gridPos": lambda d: panel(d, "Phase")["gridPos"].update(w="wide"),
    "fieldConfig.defaults": lambda d: panel(d, "Phase")["fieldConfig"]["defaults"].update(
        unitt="s"
    ),
    "dims": lambda d: panel(d, "Validation loss")["options"].update(dims={"x": "data_size"}),
    "reduceOptions": lambda d: panel(d, "Phase")["options"].pop("reduceOptions"),
}


@pytest.mark.parametrize("where", BROKEN_SCHEMA)
def test_strict_decode_refuses_unknown_mistyped_and_missing_fields(
    where: str, tmp_path: Path
) -> None:
    report = grafana_check(mutated(BROKEN_SCHEMA[where]), tmp_path)
    refused = findings(report, "strict-decode")
    assert refused and all(where in f or "unexpected field" in f for f in refused), refused


def set_expr(dashboard: dict[str, Any], title: str, expr: str) -> None:
    panel(dashboard, title)["targets"][0]["expr"] = expr


BROKEN_LINT: dict[str, Callable[[dict[str, Any]], object]] = {
    "panel-title-description-rule": lambda d: panel(d, "Phase").pop("description"),
    "panel-units-rule": lambda d: panel(d, "Trials by state")["fieldConfig"]["defaults"].update(
        unit="furlongs"
    ),
    "target-promql-rule": lambda d: set_expr(d, "Trials by state", "sum by (state) (x"),
    "target-rate-interval-rule": lambda d: set_expr(
        d, "Operator: API", "sum by (verb) (rate(scalingstudy_api_requests_total[5m]))"
    ),
    "target-counter-agg-rule": lambda d: set_expr(
        d, "Operator: API", 'sum(scalingstudy_api_requests_total{verb="get"})'
    ),
    "panel-datasource-rule": lambda d: panel(d, "Phase")["datasource"].update(uid="prom-1"),
    "uneditable-dashboard": lambda d: d.update(editable=True),
    "template-on-time-change-reload-rule": lambda d: d["templating"]["list"][1].update(refresh=1),
}


@pytest.mark.parametrize("rule", BROKEN_LINT)
def test_lint_finds_each_rules_fault(rule: str, tmp_path: Path) -> None:
    report = grafana_check(mutated(BROKEN_LINT[rule]), tmp_path)
    assert [f.split(":")[0] for f in findings(report)] == [rule], findings(report)


def test_lint_refuses_a_variable_the_dashboard_does_not_define(tmp_path: Path) -> None:
    expr = 'scalingstudy_trials{namespace="$namespace", study="$experiment"}'
    report = grafana_check(mutated(lambda d: set_expr(d, "Trials by state", expr)), tmp_path)
    assert any("$experiment" in f for f in findings(report, "target-promql-rule"))
