"""The Grafana dashboard and alert rules: every query parses (promtool, from Debian's
prometheus package) and names only metrics this project exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.contract import TRIAL_GAUGES
from tests.conftest import ROOT

CHART = ROOT / "charts" / "scalingstudy"
DASHBOARD = json.loads((CHART / "dashboards" / "scalingstudy.json").read_text())
# Grafana's variables, replaced by values of the right type before parsing.
VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$namespace": "ml", "$study": "demo"}
FOREIGN = {"up", "time"}  # Prometheus' own


def exported_metrics() -> set[str]:
    names = set(TRIAL_GAUGES.values())
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
                  "beta_p over time", "trial duration", "gpu-hours", "operator"):  # fmt: skip
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
