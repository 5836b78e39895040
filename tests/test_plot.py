"""The learning-curve plot marks, beside each best point, the learning rate that won."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from scalingstudy.fitting import FitOptions, Point, fit_points
from scalingstudy.render.plot import _winning_rates, plot_study


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


def _grid_points(best_width: Callable[[float], float]) -> list[Point]:
    pts = []
    for d in (1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000):
        for w, params in ((8, 100.0), (16, 400.0), (32, 1600.0)):
            loss = 3.0 * d**-0.3 * (1 + 0.2 * np.log(params / best_width(d)) ** 2)
            pts.append(Point(float(d), loss, float(w), parameters=params))
    return pts


def test_a_censored_optimum_is_drawn_at_its_edge_and_no_unmeasured_law_as_a_line() -> None:
    from scalingstudy.render.plot import _curve, _model_size

    points = _grid_points(lambda d: 1e5)  # the largest model is best everywhere
    fit = fit_points(points, FitOptions(bootstrap=20))
    ms = fit.model_size
    assert ms is not None and ms.beta is None
    fig, ax = plt.subplots()
    _model_size(ax, fit, ms)
    censored = [line for line in ax.lines if line.get_marker() == "^"]
    assert len(censored) == 1
    # At the grid's largest parameter count (1,600), not at the midpoint bound below it.
    assert np.allclose(censored[0].get_ydata(), 1600.0)
    assert not [line for line in ax.lines if line.get_linestyle() in ("-", ":")]
    assert any("not measurable" in t.get_text() for t in ax.texts)
    plt.close(fig)
    # Outliers are marked on the learning curve.
    bumped = [Point(p.data_size, p.loss * (1.3 if p.data_size == 8000 else 1.0), p.model_size,
                    parameters=p.parameters) for p in _grid_points(lambda d: 400.0)]  # fmt: skip
    bumped_fit = fit_points(bumped, FitOptions(bootstrap=20))
    fig, ax = plt.subplots()
    _curve(ax, bumped_fit)
    assert [o.data_size for o in bumped_fit.learning_curve.outliers] == [8000]
    assert any(line.get_label().startswith("outlier") for line in ax.lines)
    plt.close(fig)
