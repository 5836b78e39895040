"""The dashboard drawn without Grafana (tests/dashboard_render, for docs/monitoring.md):
Grafana's variables as Grafana sets them, and every panel of the chart's dashboard drawn
from data of the shape its queries return. The picture in the docs is checked to exist
and to say that it is not Grafana's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.dashboard_render.draw import draw
from tests.dashboard_render.render import PanelData, Series, TargetData, Window, legend, substitute

DASHBOARD = json.loads((ROOT / "charts/scalingstudy/dashboards/scalingstudy.json").read_text())


def test_grafanas_variables_as_grafana_sets_them() -> None:
    # $__rate_interval = max($__interval + scrape interval, 4 x scrape interval)
    assert Window(0, 3600, 60, 15).variables("ml", "demo")["$__rate_interval"] == "75s"
    assert Window(0, 3600, 5, 15).variables("ml", "demo")["$__rate_interval"] == "60s"
    variables = Window(0, 3600, 60, 15).variables("ml", "demo")
    expr = 'rate(x{namespace="$namespace", study="$study"}[$__range])'
    assert substitute(expr, variables) == 'rate(x{namespace="ml", study="demo"}[3600s])'
    with pytest.raises(ValueError, match="variable"):
        substitute('x{study="$experiment"}', variables)
    assert legend("{{state}}", {"state": "running"}) == "running"


def sample_labels(panel: dict[str, object], i: int) -> dict[str, str]:
    if panel["type"] == "xychart":
        return {"data_size": str(100 * 2**i), "model_size": str(4 * (1 + i % 2)),
                "step": str(10 * (i + 1)), "trial": f"t{i % 2}"}  # fmt: skip
    return {"state": f"s{i}", "phase": "Running", "reason": "AllDataSizes", "verb": "get"}


def test_every_panel_of_the_dashboard_is_drawn(tmp_path: Path) -> None:
    data = [
        PanelData(panel, [
            TargetData(t["refId"], t.get("legendFormat", ""), [
                Series(sample_labels(panel, i), [0.0, 60.0, 120.0], [1.0 + i, 2.0, 0.5])
                for i in range(3)
            ]) for t in panel["targets"]
        ]) for panel in DASHBOARD["panels"]
    ]  # fmt: skip
    path = tmp_path / "dashboard.png"
    draw(data, "drawn without Grafana", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_docs_show_the_picture_and_say_it_is_not_grafana() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    assert "(monitoring-dashboard.png)" in doc and "without Grafana" in doc
    image = ROOT / "docs" / "monitoring-dashboard.png"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
