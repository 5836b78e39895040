"""The Grafana dashboard's panels drawn from Prometheus data with matplotlib, without
Grafana (AGPL, not used here): what a user will see before installing anything.

Each panel's queries run as Grafana would run them (its variables substituted, range
queries for time series, instant queries where the target asks for one) and the result is
drawn in the panel's place on the dashboard's 24-column grid. The look is not Grafana's;
the image says so."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

GRID_COLUMNS = 24
UNIT_LABELS = {
    "h": "hours",
    "s": "seconds",
    "reqps": "requests/s",
    "ops": "passes/s",
    "short": "",
    "none": "",
}


@dataclass(frozen=True)
class Series:
    """One series of one target: its labels, and its samples (one for an instant query)."""

    labels: dict[str, str]
    times: list[float]
    values: list[float]


@dataclass(frozen=True)
class TargetData:
    ref_id: str
    legend: str
    series: list[Series]


@dataclass(frozen=True)
class PanelData:
    panel: dict[str, Any]
    targets: list[TargetData] = field(default_factory=list)


@dataclass(frozen=True)
class Window:
    """The dashboard's time range and step, and the scrape interval behind the data."""

    start: float
    end: float
    step: float
    scrape: float

    def variables(self, namespace: str, study: str) -> dict[str, str]:
        """Grafana's values: $__rate_interval = max($__interval + scrape, 4 x scrape)."""
        rate = max(self.step + self.scrape, 4 * self.scrape)
        return {
            "$__rate_interval": f"{int(rate)}s",
            "$__range": f"{int(self.end - self.start)}s",
            "$__interval": f"{int(self.step)}s",
            "${datasource}": "",
            "$namespace": namespace,
            "$study": study,
        }


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(name, variables[name])
    if "$" in expr:
        raise ValueError(f"a variable is left in {expr!r}")
    return expr


def legend(fmt: str, labels: Mapping[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    return text or ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")


def fetch(
    prometheus: str, dashboard: dict[str, Any], window: Window, namespace: str, study: str
) -> list[PanelData]:
    """Every panel's queries against ``prometheus``, as Grafana would send them."""
    variables = window.variables(namespace, study)
    out = []
    with httpx.Client(base_url=prometheus, timeout=30) as client:
        for panel in dashboard["panels"]:
            instant_panel = panel["type"] in ("stat", "xychart")
            targets = []
            for target in panel.get("targets", []):
                expr = substitute(target["expr"], variables)
                instant = instant_panel or bool(target.get("instant"))
                targets.append(
                    TargetData(
                        target["refId"],
                        target.get("legendFormat", ""),
                        _query(client, expr, window, instant),
                    )
                )
            out.append(PanelData(panel, targets))
    return out


def _query(client: httpx.Client, expr: str, window: Window, instant: bool) -> list[Series]:
    if instant:
        params = {"query": expr, "time": str(window.end)}
        response = client.get("/api/v1/query", params=params)
    else:
        params = {
            "query": expr,
            "start": str(window.start),
            "end": str(window.end),
            "step": str(window.step),
        }
        response = client.get("/api/v1/query_range", params=params)
    response.raise_for_status()
    result = response.json()["data"]["result"]
    series = []
    for item in result:
        samples = item["values"] if "values" in item else [item["value"]]
        series.append(
            Series(
                dict(item["metric"]), [float(t) for t, _ in samples], [float(v) for _, v in samples]
            )
        )
    return series


def save(data: Sequence[PanelData], path: Path) -> None:
    """The fetched data as JSON, so the image can be drawn again without a cluster."""
    doc = [
        {
            "panel": d.panel,
            "targets": [
                {
                    "refId": t.ref_id,
                    "legend": t.legend,
                    "series": [
                        {"labels": s.labels, "times": s.times, "values": s.values} for s in t.series
                    ],
                }
                for t in d.targets
            ],
        }
        for d in data
    ]
    path.write_text(json.dumps(doc))


def load(path: Path) -> list[PanelData]:
    return [
        PanelData(
            d["panel"],
            [
                TargetData(t["refId"], t["legend"], [Series(**s) for s in t["series"]])
                for t in d["targets"]
            ],
        )
        for d in json.loads(path.read_text())
    ]


def format_value(value: float, panel: dict[str, Any]) -> str:
    if math.isnan(value):
        return "no value"
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    decimals = defaults.get("decimals")
    text = f"{value:.{decimals}f}" if decimals is not None else f"{value:.4g}"
    unit = defaults.get("unit", "")
    if unit == "h" and decimals is None and abs(value) < 1:
        return f"{value * 60:.3g} min"  # as Grafana's hours unit shows less than one
    return text + {"h": " h", "s": " s"}.get(unit, "")
