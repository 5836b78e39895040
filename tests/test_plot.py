"""The learning-curve plot marks, beside each best point, the learning rate that won."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from scalingstudy.fitting import FitOptions, Point, fit_points
from scalingstudy.plot import _winning_rates, plot_study


def test_the_winning_learning_rate_is_written_beside_each_best_point(tmp_path: Path) -> None:
    points = [Point(float(d), 3.0 * d**-0.3 * (1 + 0.1 * (m == 8)), float(m))
              for d in (100, 200, 400, 800) for m in (8, 16)]  # fmt: skip
    fit = fit_points(points, FitOptions(bootstrap=20))
    rates = {(float(d), 16.0): 0.01 for d in (100, 200, 400)} | {(800.0, 16.0): 0.003}
    fig, ax = plt.subplots()
    _winning_rates(ax, fit, rates)
    assert sorted(t.get_text() for t in ax.texts) == ["lr 0.003", "lr 0.01", "lr 0.01", "lr 0.01"]
    plt.close(fig)
    # A cell without a sweep winner is left unmarked, and the plot is drawn either way.
    fig, ax = plt.subplots()
    _winning_rates(ax, fit, {(100.0, 8.0): 0.1})
    assert len(ax.texts) == 0
    plt.close(fig)
    out = plot_study(points, fit, tmp_path / "curve.png", learning_rates=rates)
    assert out.stat().st_size > 1000
