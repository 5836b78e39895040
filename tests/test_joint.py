"""The joint fit L(N, D) against published numbers and a planted law."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from scalingstudy.fitting import FitOptions, Point, fit_points
from scalingstudy.fitting.joint import JointLaw, fit_joint

#: In the repository (tests/data/README.md: source, licence, cut), so a clone alone runs it.
DATA = Path(__file__).resolve().parent / "data"
CHINCHILLA = DATA / "chinchilla" / "points.csv"


def test_recovers_the_published_chinchilla_fit() -> None:
    """Besiroglu et al. (2024) on the same 245 points, five highest losses dropped:
    E=1.817, A=482.0, B=2085.4, alpha=0.348, beta=0.366 (bootstrap s.e. 0.026, 124.5,
    1293.3, 0.015, 0.021). We must land within one standard error."""
    rows = list(csv.DictReader(CHINCHILLA.open()))
    n = np.array([float(r["Model Size"]) for r in rows])
    c = np.array([float(r["Training FLOP"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    keep = np.argsort(loss)[:-5]
    law = fit_joint(n[keep], (c / (6 * n))[keep], loss[keep])
    assert law.E == pytest.approx(1.817, abs=0.026)
    assert law.A == pytest.approx(482.0, abs=124.5)
    assert law.B == pytest.approx(2085.4, abs=1293.3)
    assert law.alpha == pytest.approx(0.348, abs=0.015)
    assert law.beta == pytest.approx(0.366, abs=0.021)


def test_planted_law_off_grid_rows() -> None:
    rng = np.random.default_rng(3)
    truth = JointLaw(E=0.5, A=30.0, B=200.0, alpha=0.4, beta=0.3)
    n = np.exp(rng.uniform(np.log(1e3), np.log(1e6), 120))
    d = np.exp(rng.uniform(np.log(1e4), np.log(1e8), 120))
    loss = truth(n, d) * np.exp(0.005 * rng.standard_normal(120))
    points = [
        Point(float(dd), float(ll), parameters=float(nn))
        for nn, dd, ll in zip(n, d, loss, strict=True)
    ]
    report = fit_points(points, FitOptions(joint=True, bootstrap=20, joint_bootstrap=20))
    joint = report.joint
    assert joint.alpha_N == pytest.approx(0.4, abs=0.03)
    assert joint.beta_D == pytest.approx(0.3, abs=0.03)
    assert joint.E == pytest.approx(0.5, abs=0.05)
    lo, hi = joint.intervals["alpha_N"]
    assert lo <= joint.alpha_N <= hi
    a, b = joint.compute_optimal.a, joint.compute_optimal.b
    assert a + b == pytest.approx(1.0)
    assert a == pytest.approx(joint.beta_D / (joint.alpha_N + joint.beta_D))


def test_joint_needs_three_model_sizes() -> None:
    points = [Point(m, m**-0.3 + 1 / s, s) for m in (100, 200, 400) for s in (4, 8)]
    report = fit_points(points, FitOptions(joint=True, bootstrap=0))
    assert report.joint is None
    assert any("joint fit skipped" in w for w in report.warnings)


def test_bigger_models_that_are_not_better_give_a_warning_not_a_step_function() -> None:
    """Undertrained large models (as in a CPU-sized study) make the loss rise with N at
    some data sizes; unbounded, the fit turned the N term into a step (alpha_N ~ 1000)."""
    rng = np.random.default_rng(0)
    points = []
    for d in (1e4, 3e4, 1e5, 3e5, 1e6):
        for n, penalty in ((1e4, 0.0), (1e5, -0.05), (4e5, 0.15)):
            loss = (1.2 + 30 * d**-0.3 + penalty) * np.exp(0.01 * rng.standard_normal())
            points.append(Point(d, loss, parameters=n))
    report = fit_points(points, FitOptions(bootstrap=50, joint=True))
    assert report.joint is None
    assert any("joint fit not reported: alpha_N" in w for w in report.warnings), report["warnings"]


def test_bundled_data_is_the_documented_cut() -> None:
    """tests/data holds what its README says (row counts, columns), nothing from outside
    the repository."""
    readme = (DATA / "README.md").read_text()
    chinchilla = list(csv.DictReader(CHINCHILLA.open()))
    assert len(chinchilla) == 245 and "245 final losses" in readme
    assert list(chinchilla[0]) == ["Model Size", "Training FLOP", "loss"]
    lang = (DATA / "learning-curves" / "benchmark.lang.csv").read_text().splitlines()
    assert len(lang) - 1 == 712 and "712 of 1,399 rows" in readme
    assert len(set(lang)) == len(lang)  # each line once
    assert "Apache-2.0" in readme
