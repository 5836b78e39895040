"""Honesty by construction: every reported quantity is judged once (`fitting/verdict.py`)
and every output renders that verdict. The findings of issue 37, each as it was found,
then generated studies of many shapes through every output path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.honesty import check
from benchmarks.study_shapes import SHAPES, random_study
from scalingstudy.fitting import FitOptions, Point, fit_points
from scalingstudy.fitting.invariants import violations
from scalingstudy.fitting.report import JointLawReport, ModelSizeLaw, SizeEstimate
from scalingstudy.fitting.verdict import judge_interval
from scalingstudy.render.table import format_fit
from tests.conftest import run_cli


def _csv(tmp_path: Path, rows: list[tuple[float, ...]], header: str = "data_size,loss") -> str:
    path = tmp_path / "points.csv"
    path.write_text(header + "\n" + "".join(",".join(f"{v:g}" for v in r) + "\n" for r in rows))
    return str(path)


def test_a_flat_three_point_curve_with_a_low_target_is_an_answer_not_a_traceback(
    tmp_path: Path,
) -> None:
    # Was: OverflowError in the data-for-target inversion, exit 1.
    rows = [(32, 0.914), (64, 1.089), (128, 1.061)]
    result = run_cli("fit", _csv(tmp_path, rows), "--target-loss", "0.32", "--json")
    assert result.returncode == 0, result.stderr
    target = json.loads(result.stdout)["data_for_target"]
    assert target["data_size"] is None and target["interval"][1] is None


def test_a_noise_free_curve_prints_no_zero_width_interval_and_no_point_outside() -> None:
    # Was: alpha 37.9887 with interval [37.9905, 37.9905].
    m = np.array([100.0, 200, 400, 800])
    report = fit_points([Point(x, 38 * x**-0.5) for x in m], FitOptions(bootstrap=50))
    assert violations(report) == []
    lc = report.learning_curve
    for iv in (lc.alpha_interval, lc.beta_interval):
        assert iv is None or iv[0] is None or iv[1] is None or iv[0] < iv[1]
    assert lc.alpha_interval == [None, None]


def test_a_flat_noisy_curve_names_beta_g_in_a_warning_and_is_not_drawn() -> None:
    rng = np.random.default_rng(1)
    points = [Point(100 * 2.0**k, 0.5 * float(np.exp(rng.normal(0, 0.05)))) for k in range(6)]
    report = fit_points(points, FitOptions(bootstrap=100))
    assert any("beta_g" in w and "not identified" in w for w in report.warnings)
    assert not report.drawn("learning_curve.beta")
    assert violations(report) == []


def test_an_end_at_the_optimisers_bound_is_unbounded_not_a_limit() -> None:
    # Was: the joint law's alpha_N interval [0.606, 3.0], 3.0 being joint.BOUNDS.
    judged = judge_interval("joint.alpha_N", 1.1, [0.606, 3.0], (0.0, 3.0))
    assert judged.interval == [0.606, None] and judged.verdict.status == "bounded-below"


def test_a_point_outside_its_interval_widens_it() -> None:
    judged = judge_interval("x", 2.0, [2.5, 3.0])
    assert judged.interval == [2.0, 3.0]
    assert "widened to hold its point" in (judged.verdict.reason or "")


def test_beta_p_contradicted_by_censored_optima_is_null_and_says_what_to_add() -> None:
    # Was: beta_p = 0.318 [unbounded, unbounded], its line 8x below an "at or above" optimum.
    ms = ModelSizeLaw(
        method="continuous optimum", alpha=100.0, beta=0.318, beta_interval=[0.1, 0.5],
        grid_beta=0.3, r2_log=0.9,
        estimates=[SizeEstimate(data_size=1600, parameters=69377, censored="above",
                                grid_best=270000)],
    )  # fmt: skip
    from scalingstudy.fitting.verdict import _model_size

    verdicts: list = []
    judged = _model_size(ms, verdicts)
    assert judged.beta is None and "add larger model sizes" in (judged.reason or "")
    assert verdicts[0].status == "not-identified" and not verdicts[0].drawn


def test_a_target_below_the_fitted_floor_has_no_finite_data_size() -> None:
    rng = np.random.default_rng(3)
    m = 100 * 2.0 ** np.arange(8)
    points = [Point(x, (3 * x**-0.5 + 0.05) * float(np.exp(rng.normal(0, 0.01)))) for x in m]
    options = FitOptions(form="power-law-plus-constant", bootstrap=50, target_loss=0.01,
                         predict_at=(10 * m[-1],))  # fmt: skip
    report = fit_points(points, options)
    assert report.learning_curve.gamma > 0.01
    t = report.data_for_target
    assert t is not None and t.data_size is None and t.interval is not None
    assert t.interval[1] is None
    assert "may be unreachable" in format_fit(report)


def test_the_joint_laws_compute_optimal_exponents_carry_intervals() -> None:
    rng = np.random.default_rng(0)
    points = [
        Point(d, (1.7 + 400 / n**0.34 + 410 / d**0.28) * float(np.exp(rng.normal(0, 0.01))),
              n, parameters=n)
        for d in (1e4, 3e4, 1e5, 3e5, 1e6) for n in (1e4, 3e4, 1e5, 3e5)
    ]  # fmt: skip
    report = fit_points(points, FitOptions(bootstrap=30, joint=True))
    joint = report.joint
    assert isinstance(joint, JointLawReport)
    assert joint.compute_optimal.a_interval is not None
    assert "compute-optimal N ~ C^" in format_fit(report) and "[" in format_fit(report)
    assert violations(report) == []


@pytest.mark.parametrize("seed", range(3))
def test_generated_studies_of_every_shape_break_no_invariant_in_any_output(seed: int) -> None:
    """A few dozen studies here; benchmarks/honesty.py runs several hundred."""
    rng = np.random.default_rng(100 + seed)
    seen = set()
    for _ in range(8):
        study = random_study(rng, bootstrap=30)
        seen.add(study.shape)
        assert check(study, None) == [], study.shape
    assert len(seen) >= 4 and seen <= set(SHAPES)


def test_a_steep_rising_curve_predicted_far_out_is_an_answer_not_a_crash() -> None:
    """The printed curve's own value past the data (curve_loss) and the data for a
    target, on a slope of about 512: both left floating point (OverflowError, and a
    math domain error in a degenerate bootstrap law's inversion)."""
    points = [Point(2.0, 1.0), Point(3.0, 1.0), Point(4.0, 8.996683824024983e164)]
    report = fit_points(points, FitOptions(bootstrap=5, predict_at=(1e9,), target_loss=0.5))
    (pred,) = report.predictions
    assert pred.curve_loss is None and "no finite value" in (pred.note or "")
    assert report.data_for_target is not None and report.data_for_target.data_size is None
    assert violations(report) == []


def test_a_data_size_past_the_horizon_is_no_estimate_and_unbounded_predictions_say_why() -> None:
    """Review: with too few points to backtest, the bootstrap inversion printed a data
    size 27 million times the largest as measured; and a prediction whose interval is
    unbounded on both sides said so without the reason the JSON holds."""
    report = fit_points(
        [Point(100.0, 1.0), Point(200.0, 0.99), Point(400.0, 0.98)],
        FitOptions(bootstrap=40, target_loss=0.5, predict_at=(4000.0,)),
    )
    t = report.data_for_target
    assert t is not None and t.data_size is None
    noise_free = [Point(x, 38 * x**-0.5) for x in (100.0, 200.0, 400.0, 800.0, 1600.0)]
    clean = fit_points(noise_free, FitOptions(bootstrap=40, predict_at=(1000.0,)))
    assert clean.predictions[0].interval == [None, None]
    assert "interval not identified: every resample gave the same value" in format_fit(clean)
