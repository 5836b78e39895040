"""The chart's alert rules fire: promtool's rule unit tests
(tests/data/alerts/scalingstudy-alerts.test.yaml) feed each alert the series of its fault
and a healthy study's, and say when it must fire and when it must stay quiet. promtool
comes with Debian's prometheus package, which scripts/testbin installs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scalingstudy.cluster.metrics import OperatorMetrics
from tests.conftest import ROOT

CHART = ROOT / "charts" / "scalingstudy"
UNIT_TESTS = ROOT / "tests" / "data" / "alerts" / "scalingstudy-alerts.test.yaml"


def rendered_rules() -> str:
    """alerts.yaml as templates/prometheusrule.yaml renders it with the chart's defaults."""
    stalled_for = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"][
        "stalledFor"
    ]
    return (CHART / "files" / "alerts.yaml").read_text().replace("STALLED_FOR", stalled_for)


def alert_names() -> set[str]:
    groups = yaml.safe_load(rendered_rules())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def unit_test_cases() -> list[dict[str, Any]]:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    return [case for test in tests for case in test.get("alert_rule_test", [])]


def run_promtool(rules: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool missing: scripts/testbin installs Debian's prometheus package")
    # promtool reads rule_files relative to the test file: both go to one folder.
    (tmp_path / "alerts.yaml").write_text(rules)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    return subprocess.run(
        ["promtool", "test", "rules", str(tmp_path / UNIT_TESTS.name)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_alerts_the_design_promises_exist() -> None:
    assert {
        "ScalingStudyTrialsFailing",  # a failed-trials burst
        "ScalingStudyOperatorDown",
        "ScalingStudyStalled",  # a study stuck without progress
        "ScalingStudyBudgetSpent",  # spend beyond budget
        "ScalingStudyFailed",
    } <= alert_names()


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = unit_test_cases()
    for name in alert_names():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name} is never expected to fire"
        assert any(not case["exp_alerts"] for case in mine), f"{name} is never expected quiet"


def test_alert_unit_tests_pass(tmp_path: Path) -> None:
    out = run_promtool(rendered_rules(), tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_the_unit_tests_catch_an_alert_that_never_fires(tmp_path: Path) -> None:
    """The unit tests are not vacuous: with the burst alert's threshold out of reach,
    promtool reports the burst it did not alert on."""
    rules = rendered_rules()
    broken = rules.replace("[30m]) >= 3", "[30m]) >= 300")
    assert broken != rules
    out = run_promtool(broken, tmp_path)
    assert out.returncode != 0
    assert "failed-trials burst" in out.stdout + out.stderr


def test_the_unit_tests_catch_a_budget_alert_that_ignores_the_device(tmp_path: Path) -> None:
    """Spend is compared with the budget of its own device: matched on namespace and study
    alone, the CPU-seconds of a study whose budget series is still a GPU one would fire."""
    rules = rendered_rules()
    broken = rules.replace("on (namespace, study, device)", "on (namespace, study) group_left")
    assert broken != rules
    out = run_promtool(broken, tmp_path)
    assert out.returncode != 0
    assert "spend beyond budget" in out.stdout + out.stderr


def test_the_budget_alert_reads_the_gauges_the_operator_exports() -> None:
    """The alert's two series are the operator's spend and budget gauges (a misspelt name
    would leave the alert silent in every study, and promtool's own series would agree)."""
    rule = next(
        r for group in yaml.safe_load(rendered_rules())["groups"] for r in group["rules"]
        if r.get("alert") == "ScalingStudyBudgetSpent"
    )  # fmt: skip
    exported = {family.name for family in OperatorMetrics().registry.collect()}
    for name in ("scalingstudy_design_device_seconds", "scalingstudy_design_budget_device_seconds"):
        assert name in rule["expr"] and name in exported
