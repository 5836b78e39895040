"""Learning-curve plots (log-log), drawn from trial points and a fit report."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalingstudy.fitting import Point
from scalingstudy.fitting.report import FitReport, ModelSizeLaw


def _trials(ax: Any, points: Sequence[Point], colours: Any) -> None:
    """Every trial, one line per model size, in colours that all read on white."""
    by_model: dict[float | None, list[Point]] = defaultdict(list)
    for p in points:
        by_model[p.model_size].append(p)
    for colour, (model, pts) in zip(
        colours(len(by_model)), sorted(by_model.items(), key=lambda kv: kv[0] or 0), strict=True
    ):
        pts = sorted(pts, key=lambda p: p.data_size)
        ax.plot(
            [p.data_size for p in pts],
            [p.loss for p in pts],
            "o-",
            color=colour,
            alpha=0.6,
            ms=3,
            lw=1,
            label=f"model size {model:g}" if model is not None else "trials",
        )


def _curve(ax: Any, fit: FitReport) -> None:
    """The best points, the fitted law, its band, the predictions and the regions."""
    lc = fit.learning_curve
    m_min = min(b.data_size for b in fit.best)
    m_max = max(b.data_size for b in fit.best)
    ax.plot(
        [b.data_size for b in fit.best], [b.loss for b in fit.best], "ko", ms=6,
        label="best per data size",
    )  # fmt: skip
    grid = np.geomspace(m_min, m_max, 200)
    label = f"fit: β_g = {lc.beta:.3f}"
    if lc.beta_interval:
        label += " [" + ", ".join(_end(v) for v in lc.beta_interval) + "]"
    if fit.drawn("learning_curve.beta"):
        ax.plot(grid, lc.alpha * grid**lc.beta + lc.gamma, "r-", lw=2, label=label)
    else:
        ax.text(0.03, 0.03, "β_g not identified: no law drawn (see warnings)",
                transform=ax.transAxes, fontsize=8, color="red")  # fmt: skip
    if lc.outliers:
        ax.plot(
            [o.data_size for o in lc.outliers], [o.loss for o in lc.outliers], "rx", ms=10,
            mew=2, label="outlier (left out of the fit)",
        )  # fmt: skip
    if lc.band:
        ax.fill_between(
            [b.data_size for b in lc.band],
            [b.interval[0] for b in lc.band],
            [b.interval[1] for b in lc.band],
            color="red",
            alpha=0.15,
            lw=0,
            label=f"{round(100 * lc.confidence)}% prediction band",
        )
    m_far = max([m_max, *(p.data_size for p in fit.predictions)])
    if m_far > m_max:
        # The band follows the form that predicts (chosen by the backtest), which past the
        # data may bend away from the exponent's power law.
        beyond = [b for b in lc.band if b.data_size >= m_max]
        if len(beyond) >= 2:
            ext_x = np.array([b.data_size for b in beyond])
            ext_y = np.array([b.loss for b in beyond])
            ax.plot(ext_x, ext_y, "r--", lw=1.5, label=f"prediction ({fit.extrapolation.form})")
    for pred in fit.predictions:
        if pred.interval and None not in pred.interval:
            low, high = pred.interval
            yerr = [[pred.loss - low], [high - pred.loss]]  # type: ignore[operator]
            ax.errorbar([pred.data_size], [pred.loss], yerr=yerr, fmt="rs", ms=5)
        else:
            ax.plot([pred.data_size], [pred.loss], "rs", ms=5)
            ax.annotate("interval unbounded", (pred.data_size, pred.loss), color="red",
                        textcoords="offset points", xytext=(-30, 8), fontsize=7)  # fmt: skip
    lo_range, hi_range = lc.power_law_range
    if lo_range > m_min:
        ax.axvspan(m_min / 1.2, lo_range, color="grey", alpha=0.12, label="small-data region")
    if hi_range < m_max:
        ax.axvspan(hi_range, m_max * 1.2, color="blue", alpha=0.08, label="irreducible region")
    if lc.gamma > 0 and fit.drawn("learning_curve.beta"):
        ax.axhline(lc.gamma, color="grey", ls=":", lw=1, label=f"γ = {lc.gamma:.3g} (fitted floor)")


def _model_size(ax: Any, fit: FitReport, ms: ModelSizeLaw) -> None:
    """Optima between grid points; a censored one at the grid edge it is censored at,
    with an arrow the way the optimum lies; the law as a line only when it was measured
    from optima (dotted through grid points: a step function; none when not measurable)."""
    sized = [b for b in fit.best if b.parameters is not None]
    xs = np.array([b.data_size for b in sized], dtype=float)
    ax.plot(xs, [b.parameters for b in sized], "o", color="grey", ms=4, label="best grid point")
    exact = [e for e in ms.estimates if e.censored is None]
    if exact:
        ax.plot([e.data_size for e in exact], [e.parameters for e in exact], "ko", ms=7,
                label="estimated optimum")  # fmt: skip
    for kind, marker, label in (
        ("above", "^", "largest model best: optimum at or above it"),
        ("below", "v", "smallest model best: optimum at or below it"),
    ):
        chosen = [e for e in ms.estimates if e.censored == kind]
        if not chosen:
            continue
        ax.plot([e.data_size for e in chosen], [e.grid_best for e in chosen], "k" + marker,
                ms=8, label=label)  # fmt: skip
        for e in chosen:
            end = e.grid_best * (2.5 if kind == "above" else 0.4)
            ax.annotate("", (e.data_size, end), (e.data_size, e.grid_best),
                        arrowprops={"arrowstyle": "->", "color": "k", "lw": 1})  # fmt: skip
    g = np.geomspace(xs.min(), xs.max(), 100)
    if ms.beta is not None and ms.alpha is not None:
        interval = (
            " [" + ", ".join(_end(v) for v in ms.beta_interval) + "]" if ms.beta_interval else ""
        )
        step = ms.method == "best grid point"
        label = f"fit: β_p = {ms.beta:.3f}{interval}" + (" (step function)" if step else "")
        ax.plot(g, ms.alpha * g**ms.beta, "r:" if step else "r-", label=label)
    else:
        ax.text(0.03, 0.95, "β_p not measurable (see warnings)", transform=ax.transAxes,
                fontsize=8, va="top", color="red")  # fmt: skip
    unit = "parameters" if ms.unit == "parameters" else "model size"
    ax.set_ylabel(f"{unit} of the best model")
    ax.set_title("model size")


def _end(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:.3f}"


def _axes_style(ax: Any, unit: str, ylabel: str | None = None, title: str | None = None) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"training data size ({unit})")
    if ylabel:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=8)


def _winning_rates(ax: Any, fit: FitReport, rates: Mapping[tuple[float, float], float]) -> None:
    """Beside each best point, the learning rate that won there (a learning-rate sweep)."""
    for b in fit.best:
        rate = rates.get((float(b.data_size), float(b.model_size or 0)))
        if rate is not None:
            ax.annotate(f"lr {rate:g}", (b.data_size, b.loss), textcoords="offset points",
                        xytext=(4, 6), fontsize=7)  # fmt: skip


def plot_study(
    points: Sequence[Point],
    fit: FitReport,
    path: Path,
    title: str = "",
    learning_rates: Mapping[tuple[float, float], float] | None = None,
    unit: str = "items",
    loss_unit: str = "",
) -> Path:
    """The learning curve (and the model-size law); ``learning_rates``: the winning rate
    per (data size, model size) of a sweep, written beside the best points; ``unit`` what
    a data size counts (examples, bytes, tokens), ``loss_unit`` the loss's (e.g. nats)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if fit.compute_optimal is not None:
        return _isoflop_figure(plt, points, fit, path, title)
    ms = fit.model_size
    fig, axes = plt.subplots(1, 2 if ms else 1, figsize=(12 if ms else 7, 5), squeeze=False)
    ax = axes[0][0]
    # viridis's dark-to-green part: its yellow end is nearly invisible on white.
    _trials(ax, points, lambda n: plt.get_cmap("viridis")(np.linspace(0.0, 0.75, n)))
    _curve(ax, fit)
    if learning_rates:
        _winning_rates(ax, fit, learning_rates)
    ylabel = f"validation loss ({loss_unit})" if loss_unit else "validation loss"
    _axes_style(ax, unit, ylabel, f"{title}: learning curve" if title else "learning curve")
    if ms:
        _model_size(axes[0][1], fit, ms)
        _axes_style(axes[0][1], unit)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _isoflop_figure(plt: Any, points: Sequence[Point], fit: FitReport, path: Path,
                    title: str) -> Path:  # fmt: skip
    """An IsoFLOP study's plot: its curves per budget and the optimum against compute."""
    from scalingstudy.render.plot_isoflop import isoflop_curves, optimum_against_compute

    assert fit.compute_optimal is not None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    isoflop_curves(left, points, fit.compute_optimal, plt.get_cmap("viridis"))
    optimum_against_compute(right, fit.compute_optimal)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
