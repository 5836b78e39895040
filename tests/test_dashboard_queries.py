"""The dashboard's queries evaluated by Prometheus' own engine (promtool's PromQL unit
tests) on series shaped as the operator, the Pushgateway and a trainer pod expose them: a
trial's result and a running trial's progress carry the same gauge names and differ only in
their push job (scalingstudy, scalingstudy-progress) or scrape job (the trainers'
PodMonitor), so each panel must pick its own; spend, the grid's estimate and the budget
are read in device-seconds, by device (issue 40)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

DASHBOARD = json.loads((ROOT / "charts/scalingstudy/dashboards/scalingstudy.json").read_text())
VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$namespace": "ml", "$study": "demo"}
LOSS = "scalingstudy_trial_validation_loss"
SIZES = 'data_size="100",model_size="4",seed="0"'
CURVE = "scalingstudy_curve_validation_loss"

#: Trial "done" has its result (job scalingstudy) and its last progress push; "running"
#: pushes progress and is also scraped from its pod by the PodMonitor; a neighbour study
#: must not show. The CPU study's spend, grid estimate and budget; an old GPU series of
#: another study.
SERIES = {
    f'{LOSS}{{job="scalingstudy",namespace="ml",study="demo",trial="done",{SIZES}}}': "0.5x20",
    f'{LOSS}{{job="scalingstudy-progress",namespace="ml",study="demo",trial="done",{SIZES}}}':
        "0.9x10 0.6x10",
    f'{LOSS}{{job="scalingstudy-progress",namespace="ml",study="demo",trial="running",{SIZES}}}':
        "2-0.125x20",
    f'{LOSS}{{job="ml/scalingstudy-trainers",pod="running-x",namespace="ml",study="demo",'
    f'trial="running",{SIZES}}}': "2-0.125x20",
    f'{LOSS}{{job="scalingstudy-progress",namespace="ml",study="other",trial="o",{SIZES}}}':
        "3x20",
    # A running trial's pushed curve: step 10 was thinned away after 5 minutes, step 20
    # stays; the neighbour study's curve must not show.
    f'{CURVE}{{job="scalingstudy-progress",namespace="ml",study="demo",trial="running",'
    f'step="10",{SIZES}}}': "2x5",
    f'{CURVE}{{job="scalingstudy-progress",namespace="ml",study="demo",trial="running",'
    f'step="20",{SIZES}}}': "1.5x20",
    f'{CURVE}{{job="scalingstudy-progress",namespace="ml",study="other",trial="o",'
    f'step="20",{SIZES}}}': "3x20",
    'scalingstudy_design_device_seconds{namespace="ml",study="demo",device="cpu"}': "0+300x20",
    'scalingstudy_design_grid_device_seconds{namespace="ml",study="demo",device="cpu"}': "72000x20",
    'scalingstudy_design_budget_device_seconds{namespace="ml",study="demo",device="cpu"}':
        "36000x20",
    'scalingstudy_design_device_seconds{namespace="ml",study="other",device="gpu"}': "99x20",
}  # fmt: skip


RESULT = (
    f'{{__name__="{LOSS}",job="scalingstudy",namespace="ml",study="demo",trial="done",{SIZES}}}'
)


def panel(title_start: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        p for p in DASHBOARD["panels"] if p["title"].startswith(title_start)
    )
    return found


def query(title_start: str, ref: str = "A") -> str:
    target = next(t for t in panel(title_start)["targets"] if t["refId"] == ref)
    expr: str = target["expr"]
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def evaluate(cases: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool evaluates each case's expression at its time and compares the samples."""
    if shutil.which("promtool") is None:
        pytest.fail("promtool missing: scripts/testbin installs Debian's prometheus package")
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": k, "values": v} for k, v in SERIES.items()],
                "promql_expr_test": cases,
            }
        ],
    }
    path = tmp_path / "queries.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )


def case(expr: str, samples: list[tuple[str, float]], at: str = "12m") -> dict[str, Any]:
    return {
        "expr": expr,
        "eval_time": at,
        "exp_samples": [{"labels": labels, "value": value} for labels, value in samples],
    }


def test_results_panel_shows_results_and_live_panel_shows_progress(tmp_path: Path) -> None:
    results = query("Validation loss vs data size")
    live = query("Validation loss of running trials")
    out = evaluate(
        [
            # The result alone: a trial's progress is no point of the learning curve.
            case(results, [(RESULT, 0.5)]),
            # One line per trial, its pushed and scraped progress one series; no result.
            case(live, [('{trial="done"}', 0.6), ('{trial="running"}', 0.5)]),
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def demo_cpu(name: str) -> str:
    return f'{{__name__="scalingstudy_design_{name}",namespace="ml",study="demo",device="cpu"}}'


def test_spend_panels_read_device_seconds_by_device(tmp_path: Path) -> None:
    spent = "Device-seconds spent"
    out = evaluate(
        [
            case(query("Device-hours used"), [('{device="cpu"}', 1.0)]),
            case(query("Devices busy"), [('{device="cpu"}', 5.0)]),
            case(query(spent, "A"), [(demo_cpu("device_seconds"), 3600.0)]),
            case(query(spent, "B"), [(demo_cpu("grid_device_seconds"), 72000.0)]),
            case(query(spent, "C"), [(demo_cpu("budget_device_seconds"), 36000.0)]),
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_query_that_mixes_progress_into_results_is_caught(tmp_path: Path) -> None:
    """Not vacuous: the results panel's query without its job matcher shows the progress
    of both trials as points of the curve, and promtool says so."""
    mixed = query("Validation loss vs data size").replace(', job="scalingstudy"', "")
    assert mixed != query("Validation loss vs data size")
    out = evaluate([case(mixed, [(RESULT, 0.5)])], tmp_path)
    assert out.returncode != 0 and "running" in out.stdout + out.stderr


def test_step_panel_shows_each_point_of_the_studys_curves(tmp_path: Path) -> None:
    """Every step pushed in the time range, at its last value (a thinned-away step too:
    it was a real evaluation), with the labels the panel partitions and plots by."""
    step = query("Validation loss vs step")
    labels = (
        f'__name__="{CURVE}",job="scalingstudy-progress",namespace="ml",study="demo",'
        f'trial="running",{SIZES}'
    )
    out = evaluate([case(step, [(f'{{{labels},step="10"}}', 2.0),
                                (f'{{{labels},step="20"}}', 1.5)])], tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
