"""Learning-curve plots (log-log), drawn from trial points and a fit report."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalingstudy.fitting import Point


def plot_study(points: Sequence[Point], fit: dict[str, Any], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_size = fit.get("model_size") is not None
    fig, axes = plt.subplots(
        1, 2 if has_size else 1, figsize=(12 if has_size else 7, 5), squeeze=False
    )
    ax = axes[0][0]
    by_model: dict[float | None, list[Point]] = defaultdict(list)
    for p in points:
        by_model[p.model_size].append(p)
    colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, len(by_model)))
    for colour, (model, pts) in zip(
        colours, sorted(by_model.items(), key=lambda kv: kv[0] or 0), strict=True
    ):
        pts = sorted(pts, key=lambda p: p.data_size)
        ax.plot(
            [p.data_size for p in pts],
            [p.loss for p in pts],
            "o-",
            color=colour,
            alpha=0.35,
            ms=3,
            lw=1,
            label=f"model size {model:g}" if model is not None else "trials",
        )
    best = fit["best"]
    ax.plot(
        [b["data_size"] for b in best],
        [b["loss"] for b in best],
        "ko",
        ms=6,
        label="best per data size",
    )

    lc = fit["learning_curve"]
    lo_range, hi_range = lc["power_law_range"]
    m_min = min(b["data_size"] for b in best)
    m_max = max(b["data_size"] for b in best)
    targets = [p["data_size"] for p in fit.get("predictions", [])]
    m_far = max([m_max, *targets])
    grid = np.geomspace(m_min, m_max, 200)
    curve = lc["alpha"] * grid ** lc["beta"] + lc["gamma"]
    interval = lc.get("beta_interval")
    label = f"fit: β_g = {lc['beta']:.3f}"
    if interval:
        label += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    ax.plot(grid, curve, "r-", lw=2, label=label)
    band = lc.get("band") or []
    if band:
        conf = round(100 * lc.get("confidence", 0.9))
        ax.fill_between(
            [b["data_size"] for b in band],
            [b["interval"][0] for b in band],
            [b["interval"][1] for b in band],
            color="red",
            alpha=0.15,
            lw=0,
            label=f"{conf}% prediction band",
        )
    if m_far > m_max:
        # The band follows the form that predicts (chosen by the backtest), which past the
        # data may bend away from the exponent's power law.
        beyond = [b for b in band if b["data_size"] >= m_max]
        if len(beyond) >= 2:
            ext_x = np.array([b["data_size"] for b in beyond])
            ext_y = np.array([b["loss"] for b in beyond])
        else:
            ext_x = np.geomspace(m_max, m_far, 50)
            ext_y = lc["alpha"] * ext_x ** lc["beta"] + lc["gamma"]
        form = (fit.get("extrapolation") or {}).get("form", "power law")
        ax.plot(ext_x, ext_y, "r--", lw=1.5, label=f"prediction ({form})")
    for pred in fit.get("predictions", []):
        err = pred.get("interval")
        if err:
            ax.errorbar(
                [pred["data_size"]],
                [pred["loss"]],
                yerr=[[pred["loss"] - err[0]], [err[1] - pred["loss"]]],
                fmt="rs",
                ms=5,
            )
        else:
            ax.plot([pred["data_size"]], [pred["loss"]], "rs", ms=5)
    if lo_range > m_min:
        ax.axvspan(m_min / 1.2, lo_range, color="grey", alpha=0.12, label="small-data region")
    if hi_range < m_max:
        ax.axvspan(hi_range, m_max * 1.2, color="blue", alpha=0.08, label="irreducible region")
    if lc["gamma"] > 0:
        ax.axhline(lc["gamma"], color="grey", ls=":", lw=1, label=f"γ = {lc['gamma']:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training data size")
    ax.set_ylabel("validation loss")
    ax.set_title(f"{title} learning curve".strip())
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=8)

    if has_size:
        ms = fit["model_size"]
        ax2 = axes[0][1]
        sized = [b for b in best if b.get("parameters") is not None]
        xs = np.array([b["data_size"] for b in sized], dtype=float)
        ax2.plot(
            xs, [b["parameters"] for b in sized], "o", color="grey", ms=4, label="best grid point"
        )
        estimates = ms.get("estimates") or []
        for kind, marker, label in (
            (None, "ko", "estimated optimum"),
            ("above", "k^", "optimum above (largest size best)"),
            ("below", "kv", "optimum below (smallest size best)"),
        ):
            chosen = [e for e in estimates if e.get("censored") == kind]
            if chosen:
                ax2.plot(
                    [e["data_size"] for e in chosen],
                    [e["parameters"] for e in chosen],
                    marker,
                    ms=7,
                    label=label,
                )
        g = np.geomspace(xs.min(), xs.max(), 100)
        ax2.plot(g, ms["alpha"] * g ** ms["beta"], "r-", label=f"fit: β_p = {ms['beta']:.3f}")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("training data size")
        ax2.set_ylabel("parameters of the best model")
        ax2.set_title("model size")
        ax2.grid(True, which="both", alpha=0.2)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
