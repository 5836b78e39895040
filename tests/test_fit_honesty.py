"""Issue 25: no number more certain than its data, in a single study's worst case.

Each test is one case a user met: a zero-width interval, an optimiser bound printed as a
confidence limit, beta_p = 0 [0, 0], one outlier deciding beta_g, a predicted collapse,
a point prediction outside its own interval.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scalingstudy.fitting import FitOptions, Point, fit_points
from scalingstudy.fitting.curve import BETA_MAX, BETA_MIN
from tests.conftest import run_cli


def _points(m: np.ndarray, y: np.ndarray) -> list[Point]:
    return [Point(float(a), float(b)) for a, b in zip(m, y, strict=True)]


def test_three_points_for_three_parameters_give_unbounded_intervals(tmp_path: Path) -> None:
    csv = tmp_path / "three.csv"
    csv.write_text("data_size,loss\n1000,2.0\n2000,1.6\n4000,1.35\n")
    out = run_cli(
        "fit", str(csv), "--form", "power-law-plus-constant", "--predict-at", "1e6", "--json"
    )
    assert out.returncode == 0, out.stderr
    fit = json.loads(out.stdout)
    assert fit["learning_curve"]["beta_interval"] == [None, None]
    assert fit["predictions"][0]["interval"] == [None, None]
    assert any("3 data sizes for 3 parameters" in w for w in fit["warnings"])
    table = run_cli("fit", str(csv), "--form", "power-law-plus-constant", "--predict-at", "1e6")
    assert "[unbounded, unbounded]" in table.stdout


@pytest.mark.parametrize("seed", range(12))
def test_no_interval_end_is_an_optimiser_bound(seed: int) -> None:
    """Short noisy curves whose profile runs to the end of the searched exponents: that
    end is open (None), never -3 or -1e-4 printed as a confidence limit."""
    rng = np.random.default_rng(seed)
    m = np.geomspace(100, 1600, 5)
    y = (2 * m ** rng.uniform(-1.5, -0.01) + rng.uniform(0, 0.5)) * np.exp(
        0.15 * rng.standard_normal(5)
    )
    lc = fit_points(_points(m, y), FitOptions(bootstrap=100)).learning_curve
    assert lc.beta_interval is not None
    for end in lc.beta_interval:
        assert end is None or (abs(end - BETA_MIN) > 1e-6 and abs(end - BETA_MAX) > 1e-6)


def test_beta_p_is_null_with_a_reason_when_the_largest_model_always_wins(
    tmp_path: Path,
) -> None:
    lines = ["data_size,model_size,parameters,loss"]
    for m in (1000, 2000, 4000, 8000, 16000, 32000):
        for width, params in ((8, 100), (16, 400), (32, 1600)):
            lines.append(f"{m},{width},{params},{3 * m**-0.3 * (1 + 8 / width):.6f}")
    csv = tmp_path / "largest.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = run_cli("fit", str(csv), "--json")
    assert out.returncode == 0, out.stderr
    size = json.loads(out.stdout)["model_size"]
    assert size["beta"] is None and size["beta_interval"] is None
    assert "not measurable" in size["reason"] and "add larger model sizes" in size["reason"]
    table = run_cli("fit", str(csv))
    assert "beta_p = null" in table.stdout and "0.0000 [0, 0]" not in table.stdout


def test_model_size_without_parameters_says_the_unit(tmp_path: Path) -> None:
    # A little noise: on noise-free optima no interval of beta_p can be measured, and the
    # verdict step then (rightly) reports beta_p as null.
    rng = np.random.default_rng(0)
    lines = ["data_size,model_size,loss"]
    for m in (1000, 2000, 4000, 8000, 16000, 32000):
        best = 4 * (m / 1000) ** 0.5 * np.exp(rng.normal(0, 0.1))
        for width in (4, 8, 16, 32, 64):
            loss = 3 * m**-0.3 * (1 + 0.2 * np.log(width / best) ** 2)
            lines.append(f"{m},{width},{loss:.6f}")
    csv = tmp_path / "knob.csv"
    csv.write_text("\n".join(lines) + "\n")
    fit = json.loads(run_cli("fit", str(csv), "--json").stdout)
    assert fit["model_size"]["unit"] == "model_size"
    assert any("size knob" in w for w in fit["warnings"])
    assert "model_size = " in run_cli("fit", str(csv)).stdout


@pytest.mark.parametrize("noise_seed", range(3))
@pytest.mark.parametrize("factor", [1.25, 0.8])
def test_one_25_percent_outlier_moves_beta_g_less_than_a_third(
    noise_seed: int, factor: float
) -> None:
    rng = np.random.default_rng(noise_seed)
    m = 1000.0 * 2 ** np.arange(8)
    y = (3 * m**-0.392 + 0.05) * np.exp(0.01 * rng.standard_normal(8))
    clean = fit_points(_points(m, y), FitOptions(bootstrap=50))
    assert clean.learning_curve.outliers == []
    bad = y.copy()
    bad[5] *= factor  # m = 32,000
    report = fit_points(_points(m, bad), FitOptions(bootstrap=50))
    lc = report.learning_curve
    assert abs(lc.beta - clean.learning_curve.beta) <= abs(clean.learning_curve.beta) / 3
    assert [o.data_size for o in lc.outliers] == [32000]
    assert (lc.outliers[0].residual_sd > 0) == (factor > 1)
    assert lc.beta_with_outliers is not None
    assert any("m = 32000" in w and "outlier" in w for w in report.warnings)


#: A real learning curve (LCDB 1.0, OpenML 41159, scikit-learn's MLPClassifier, error
#: rate): flat, then starting to fall at the sizes fitted; the held-out sizes go on
#: falling slowly. Fitted on the sizes <= largest/8, the form chosen before extrapolated
#: a collapse (RMSE of log error 1.82; the last value's 0.16).
REAL_FIT = {16: 0.462565, 23: 0.46028, 32: 0.46692, 45: 0.46533, 64: 0.46564, 91: 0.458035,
            128: 0.459245, 181: 0.46789, 256: 0.461645, 362: 0.45264, 512: 0.451232,
            724: 0.447911, 1024: 0.427926, 1448: 0.412984}  # fmt: skip
REAL_HELD = {2048: 0.393032, 2896: 0.372495, 4096: 0.350489, 5793: 0.342222, 8192: 0.33135,
             16200: 0.34112}  # fmt: skip


def test_a_real_curve_starting_to_fall_is_not_extrapolated_to_a_collapse() -> None:
    m, y = np.array(list(REAL_FIT), float), np.array(list(REAL_FIT.values()))
    report = fit_points(_points(m, y), FitOptions(bootstrap=50, predict_at=tuple(REAL_HELD)))
    predicted = np.array([p.loss for p in report.predictions])
    truth = np.array(list(REAL_HELD.values()))
    assert float(np.sqrt(np.mean(np.log(predicted / truth) ** 2))) < 0.5
    for p in report.predictions:
        assert p.interval is not None and None not in p.interval
        assert p.interval[0] <= p.loss <= p.interval[1]  # type: ignore[operator]


@pytest.mark.parametrize("seed", range(8))
def test_the_point_prediction_lies_inside_its_interval(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    m = np.geomspace(100, 100 * 2 ** rng.integers(4, 9), rng.integers(5, 10))
    y = (rng.uniform(1, 5) * m ** rng.uniform(-0.8, -0.05) + rng.uniform(0, 0.3)) * np.exp(
        rng.uniform(0, 0.1) * rng.standard_normal(len(m))
    )
    at = (float(m[-1] * 2), float(m[-1] * 30))
    report = fit_points(_points(m, y), FitOptions(bootstrap=100, predict_at=at))
    for p in report.predictions:
        assert p.interval is not None
        low, high = p.interval
        assert (low is None or low <= p.loss) and (high is None or p.loss <= high)


def test_a_range_always_ends_at_its_max() -> None:
    from scalingstudy.spec.grid import SizeGrid

    assert SizeGrid(min=50, max=1200, factor=2).sizes() == [50, 100, 200, 400, 800, 1200]
    assert SizeGrid(min=100, max=6400, factor=2).sizes()[-1] == 6400  # on the grid: once


def test_result_files_get_the_users_umask(tmp_path: Path) -> None:
    import os

    from scalingstudy_sdk.atomic import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "results.csv", "data_size,loss\n")
    finally:
        os.umask(old)
    assert (tmp_path / "results.csv").stat().st_mode & 0o777 == 0o644


def test_fit_plot_and_study_files_share_one_bootstrap_default() -> None:
    from scalingstudy.cli import build_parser
    from scalingstudy.fitting.options import DEFAULT_BOOTSTRAP, FitOptions
    from scalingstudy.spec.training import FitSpec

    # Unset on the command line: the study's setting with --study, else FitOptions'.
    fit_args = build_parser().parse_args(["fit", "x.csv"])
    assert fit_args.bootstrap is None
    assert FitOptions().bootstrap == DEFAULT_BOOTSTRAP == FitSpec().bootstrap
    assert f"default: {DEFAULT_BOOTSTRAP}" in run_cli("fit", "--help").stdout


def test_plot_refuses_refit_options_for_a_fit_json(tmp_path: Path) -> None:
    fit = tmp_path / "fit.json"
    fit.write_text("{}")
    out = run_cli("plot", str(fit), "-o", str(tmp_path / "p.png"), "--predict-at", "1e6")
    assert out.returncode == 2 and "--predict-at" in out.stderr
