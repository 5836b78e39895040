"""Drawing the fetched panels: each in its gridPos cell; stat panels as text, time series
as lines (stacked where the panel stacks, an interval shaded where it fills between two
series), the xychart as log-log points per model size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from tests.dashboard_render.render import (
    GRID_COLUMNS,
    UNIT_LABELS,
    PanelData,
    Series,
    format_value,
    legend,
)

ROW_INCHES = 0.45
WIDTH_INCHES = 18.0
HEADING_INCHES = 0.9
#: Room around each panel's plot (inches): its title above, tick labels below and left.
PAD_TOP, PAD_BOTTOM, PAD_LEFT, PAD_RIGHT = 0.35, 0.45, 0.75, 0.15
#: The most series a time-series panel names in its legend (the live panel has one per trial).
MAX_LEGEND = 12


def draw(data: Sequence[PanelData], heading: str, path: Path) -> None:
    """Each panel in its gridPos cell (24 columns; rows of ROW_INCHES), under a heading."""
    rows = max(d.panel["gridPos"]["y"] + d.panel["gridPos"]["h"] for d in data)
    height = rows * ROW_INCHES + HEADING_INCHES
    fig = plt.figure(figsize=(WIDTH_INCHES, height), dpi=80)
    fig.text(0.005, 1 - 0.15 / height, heading, fontsize=12, va="top")
    column = WIDTH_INCHES / GRID_COLUMNS
    for d in data:
        pos = d.panel["gridPos"]
        left = pos["x"] * column + PAD_LEFT
        top = HEADING_INCHES + pos["y"] * ROW_INCHES + PAD_TOP
        width = pos["w"] * column - PAD_LEFT - PAD_RIGHT
        tall = pos["h"] * ROW_INCHES - PAD_TOP - PAD_BOTTOM
        ax = fig.add_axes(
            (left / WIDTH_INCHES, 1 - (top + tall) / height, width / WIDTH_INCHES, tall / height)
        )
        ax.set_title(d.panel["title"], fontsize=10, loc="left")
        {"stat": _stat, "timeseries": _timeseries, "xychart": _xychart}[d.panel["type"]](ax, d)
    fig.savefig(path)
    plt.close(fig)


def _stat(ax: Axes, d: PanelData) -> None:
    ax.set_axis_off()
    mode = d.panel.get("options", {}).get("textMode", "auto")
    lines = []
    for t in d.targets:
        for s in t.series:
            name = legend(t.legend, s.labels)
            value = format_value(s.values[-1], d.panel)
            lines.append(
                name
                if mode == "name"
                else f"{name}: {value}"
                if mode == "value_and_name"
                else value
            )
    text = "\n".join(lines) if lines else "No data"
    ax.text(
        0.5,
        0.45,
        text,
        ha="center",
        va="center",
        fontsize=18 if len(lines) < 2 else 13,
        weight="bold",
        color="#1f77b4" if lines else "grey",
        transform=ax.transAxes,
    )


def _timeseries(ax: Axes, d: PanelData) -> None:
    custom = d.panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
    named = {legend(t.legend, s.labels): s for t in d.targets for s in t.series}
    if not named:
        ax.text(0.5, 0.5, "No data", ha="center", transform=ax.transAxes, color="grey")
        return
    when = {n: np.array([int(x) for x in s.times], dtype="datetime64[s]") for n, s in named.items()}
    if custom.get("stacking", {}).get("mode") == "normal":
        names = sorted(named)
        ax.stackplot(when[names[0]], *[named[n].values for n in names], labels=names, alpha=0.6)
    else:
        fills = _fills(d.panel)
        for upper, lower in fills:
            if upper in named and lower in named:
                _fill_between(ax, named[upper], named[lower], f"{lower} .. {upper}")
        hidden = {name for pair in fills for name in pair}
        for name, s in named.items():
            if name not in hidden:
                ax.plot(when[name], s.values, label=name, marker="." if len(s.values) < 3 else "")
    ax.set_ylabel(UNIT_LABELS.get(d.panel["fieldConfig"]["defaults"].get("unit", ""), ""))
    if custom.get("scaleDistribution", {}).get("type") == "log":
        ax.set_yscale("log")
    if len(named) <= MAX_LEGEND:
        ax.legend(fontsize=8, loc="upper left")
    else:  # one line per trial: Grafana lists them beside the plot; here, their count
        ax.text(0.99, 0.97, f"{len(named)} series (legend left out)", ha="right", va="top",
                fontsize=8, transform=ax.transAxes)  # fmt: skip
    ax.tick_params(labelsize=8)
    span = max(s.times[-1] for s in named.values()) - min(s.times[0] for s in named.values())
    fmt = "%H:%M:%S" if span < 3600 else "%H:%M"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt))  # type: ignore[no-untyped-call]


def _fill_between(ax: Axes, upper: Series, lower: Series, label: str) -> None:
    """The band between two series, at the times both have a sample (an interval end
    appears only once a fit bounds it)."""
    low = dict(zip(lower.times, lower.values, strict=True))
    both = [(t, low[t], v) for t, v in zip(upper.times, upper.values, strict=True) if t in low]
    if both:
        times = np.array([int(t) for t, _, _ in both], dtype="datetime64[s]")
        ax.fill_between(times, [b[1] for b in both], [b[2] for b in both], alpha=0.25, label=label)


def _fills(panel: dict[str, Any]) -> list[tuple[str, str]]:
    """(upper, lower) for each override that fills one series down to another."""
    pairs = []
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        for prop in override.get("properties", []):
            if prop["id"] == "custom.fillBelowTo":
                pairs.append((override["matcher"]["options"], prop["value"]))
    return pairs


def _xychart_fields(panel: dict[str, Any]) -> tuple[str, str, bool]:
    """As Grafana reads the panel: the x field (its series mapping), the label each series
    is partitioned by (its partitionByValues transformation) and whether x is on a log
    scale (the defaults' scale unless an override by the x field's name says otherwise)."""
    x = panel["options"]["series"][0]["x"]["matcher"]["options"]
    (by,) = next(t["options"]["fields"] for t in panel["transformations"]
                 if t["id"] == "partitionByValues")  # fmt: skip
    scale = panel["fieldConfig"]["defaults"]["custom"]["scaleDistribution"]["type"]
    for override in panel["fieldConfig"].get("overrides", []):
        if override["matcher"] == {"id": "byName", "options": x}:
            for prop in override["properties"]:
                if prop["id"] == "custom.scaleDistribution":
                    scale = prop["value"]["type"]
    return x, by, scale == "log"


def _label_order(value: str) -> tuple[int, float, str]:
    """Numbers first, by value; then other labels, by text."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _xychart(ax: Axes, d: PanelData) -> None:
    x, by, log_x = _xychart_fields(d.panel)
    parts: dict[str, list[tuple[float, float]]] = {}
    for t in d.targets:
        for s in t.series:
            part = s.labels.get(by, "?")
            parts.setdefault(part, []).append((float(s.labels[x]), s.values[-1]))
    for part in sorted(parts, key=_label_order):
        points = sorted(parts[part])
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3,
                linestyle="none", label=f"{by}={part}")  # fmt: skip
    if not parts:
        ax.text(0.5, 0.5, "No data", ha="center", transform=ax.transAxes, color="grey")
        return
    if log_x:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x, fontsize=8)
    ax.set_ylabel("validation loss", fontsize=8)
    if len(parts) <= 12:  # a line per trial of a large study: the legend would hide it
        ax.legend(fontsize=6 if len(parts) > 6 else 8)
    ax.tick_params(labelsize=8)
