"""report.html's "Training curves": one small inline SVG per data size, a line per trial
(colour by model size, dash by learning rate), validation loss against step on log-log
axes, a pruned trial marked with a cross where it stopped.

Pure and self-contained: SVG markup built from typed values, no script, no external URL
(inline SVG needs no namespace), every text escaped. Each line has at most
``MAX_POINTS`` points (the curves are thinned), so a trial that evaluated 10,000 times
costs the page no more than any other."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from scalingstudy.curve_rows import CurveTrial
from scalingstudy.render.table import short
from scalingstudy_sdk.curve import MAX_POINTS, Curve, thin

WIDTH, HEIGHT = 340, 230
LEFT, RIGHT, TOP, BOTTOM = 60, 12, 10, 34
#: Colour per model size (by rank), dash per learning rate (by rank): distinguishable in
#: print and for the common colour blindnesses (Okabe-Ito).
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000",
           "#F0E442")  # fmt: skip
DASHES = ("", "6 3", "2 3", "8 3 2 3")

STYLE = """
.curves{display:flex;flex-wrap:wrap;gap:1em}.curves figure{margin:0;max-width:342px}
.curves figcaption{font-size:.9em;color:#444}.curves svg{border:1px solid #eee}
.curves text{font:10px system-ui,sans-serif;fill:#444}
"""


@dataclass(frozen=True)
class TrialLine:
    """One trial's curve as a panel draws it."""

    trial: CurveTrial
    curve: Curve


@dataclass(frozen=True)
class _Axes:
    """Log10 ranges of step (x) and loss (y)."""

    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, step: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return LEFT + (math.log10(step) - self.x0) / span * (WIDTH - LEFT - RIGHT)

    def y(self, loss: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return HEIGHT - BOTTOM - (math.log10(loss) - self.y0) / span * (HEIGHT - TOP - BOTTOM)


def drawable(curve: Curve) -> list[tuple[int, float]]:
    """(step, loss) points a log-log axis can hold: positive step, finite positive loss
    (a diverged evaluation is left out: it has no place on the axis)."""
    return [
        (p.step, p.validation_loss)
        for p in thin(curve.points, MAX_POINTS)
        if p.step > 0
        and p.validation_loss is not None
        and math.isfinite(p.validation_loss)
        and p.validation_loss > 0
    ]


def _axes(lines: Sequence[list[tuple[int, float]]]) -> _Axes:
    steps = [s for line in lines for s, _ in line]
    losses = [v for line in lines for _, v in line]
    pad = 0.03
    lo, hi = math.log10(min(losses)), math.log10(max(losses))
    return _Axes(math.log10(min(steps)), math.log10(max(steps)), lo - pad, hi + pad)


def _ticks(lo: float, hi: float) -> list[float]:
    """Values to label on a log axis from 10**lo to 10**hi: both ends, and the decades
    between that are not crowded against them."""
    room = 0.12 * (hi - lo)
    inner = [10.0**k for k in range(math.ceil(lo), math.floor(hi) + 1)
             if lo + room < k < hi - room]  # fmt: skip
    return [10.0**lo, *inner, 10.0**hi]


def _frame(axes: _Axes) -> str:
    parts = [f'<rect x={LEFT} y={TOP} width={WIDTH - LEFT - RIGHT} '
             f'height={HEIGHT - TOP - BOTTOM} fill=none stroke="#ccc"/>']  # fmt: skip
    for v in _ticks(axes.x0, axes.x1):
        x = axes.x(v)
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 12}" '
                     f'text-anchor=middle>{escape(short(v))}</text>')  # fmt: skip
    for v in _ticks(axes.y0, axes.y1):
        y = axes.y(v)
        parts.append(f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor=end>'
                     f"{escape(short(v, 3))}</text>")  # fmt: skip
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" '
                 "text-anchor=middle>step</text>")  # fmt: skip
    middle = (TOP + HEIGHT - BOTTOM) / 2
    parts.append(f'<text x=12 y="{middle}" text-anchor=middle '
                 f'transform="rotate(-90 12 {middle})">validation loss</text>')  # fmt: skip
    return "".join(parts)


def _line(item: TrialLine, points: list[tuple[int, float]], axes: _Axes, colour: str,
          dash: str) -> str:  # fmt: skip
    t = item.trial
    label = (f"{t.trial}: model size {t.model_size}, learning rate {short(t.learning_rate)}, "
             f"seed {t.seed}, {t.status}")  # fmt: skip
    coords = " ".join(f"{axes.x(s):.1f},{axes.y(v):.1f}" for s, v in points)
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    out = (f'<polyline class=curve points="{coords}" fill=none stroke="{colour}" '
           f'stroke-width=1.5{dashed}><title>{escape(label)}</title></polyline>')  # fmt: skip
    if t.status == "Pruned":
        s, v = points[-1]
        x, y = axes.x(s), axes.y(v)
        cross = f"M{x - 4:.1f},{y - 4:.1f}l8,8m-8,0l8,-8"
        tip = escape(f"{t.trial} pruned at step {s}")
        out += (f'<path class=pruned d="{cross}" stroke="{colour}" stroke-width=2>'
                f"<title>{tip}</title></path>")  # fmt: skip
    return out


def panel(data_size: int, items: Sequence[TrialLine], models: Sequence[int],
          rates: Sequence[float | None]) -> str:  # fmt: skip
    """One data size's panel: a figure with its SVG and a caption naming the styles."""
    drawn = [(item, drawable(item.curve)) for item in items]
    drawn = [(item, pts) for item, pts in drawn if pts]
    axes = _axes([pts for _, pts in drawn])
    body = "".join(
        _line(item, pts, axes, COLOURS[models.index(item.trial.model_size) % len(COLOURS)],
              DASHES[rates.index(item.trial.learning_rate) % len(DASHES)])
        for item, pts in drawn
    )  # fmt: skip
    legend = ", ".join(
        f'<span style="color:{COLOURS[i % len(COLOURS)]}">&#9644; {m}</span>'
        for i, m in enumerate(models)
        if any(item.trial.model_size == m for item, _ in drawn)
    )
    pruned = sum(item.trial.status == "Pruned" for item, _ in drawn)
    note = f"; &times; pruned ({pruned})" if pruned else ""
    return (
        f"<figure><svg id=curves-{data_size} class=curve-panel width={WIDTH} height={HEIGHT} "
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role=img aria-label="validation loss against step, '
        f'data size {data_size}">{_frame(axes)}{body}</svg>'
        f"<figcaption>data size {data_size}: validation loss vs step (log-log); model size "
        f"{legend}{_rates_note(rates)}{note}</figcaption></figure>"
    )


def _rates_note(rates: Sequence[float | None]) -> str:
    if len(rates) < 2:
        return ""
    styles = ("solid", "dashed", "dotted", "dash-dot")
    return "; learning rate " + ", ".join(
        f"{short(r)} {styles[i % len(styles)]}" for i, r in enumerate(rates)
    )


def curves_section(items: Sequence[TrialLine]) -> str:
    """The section, or nothing when no trial has a point to draw (no empty section)."""
    shown = [item for item in items if drawable(item.curve)]
    if not shown:
        return ""
    models = sorted({i.trial.model_size for i in shown})
    rates = sorted({i.trial.learning_rate for i in shown}, key=lambda r: (r is None, r or 0.0))
    sizes = sorted({i.trial.data_size for i in shown})
    panels = "".join(
        panel(d, sorted((i for i in shown if i.trial.data_size == d),
                        key=lambda i: (i.trial.model_size, i.trial.seed, i.trial.trial)),
              models, rates)
        for d in sizes
    )  # fmt: skip
    return (
        "<h2 id=curves>Training curves</h2><p>Validation loss against step, both axes "
        "logarithmic, one panel per data size; each trial's evaluations from its own log."
        f"</p><div class=curves>{panels}</div>"
    )
