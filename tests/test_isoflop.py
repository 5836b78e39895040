"""IsoFLOP studies (issue 28): the trials of each compute budget, the compute-optimal
analysis with both methods and honest edges, and a whole study through `scalingstudy run`
on a law whose answer is known."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from scalingstudy.fitting import FitOptions, Point, fit_points
from scalingstudy.fitting.compute_optimal import IsoPoint, compute_optimal
from scalingstudy.planning.isoflop import isoflop_plan
from scalingstudy.planning.plan import plan_trials
from scalingstudy.spec import SpecError, parse_spec
from tests.browser import render
from tests.conftest import run_cli

HERE = Path(__file__).resolve().parent
#: E, A, alpha, B, beta: the compute-optimal model-size exponent is beta / (alpha + beta).
LAW = (1.7, 400.0, 0.34, 410.0, 0.28)
A_TRUE = LAW[4] / (LAW[2] + LAW[4])
#: Model sizes (the law's N) a factor of about 3 apart; the trainer reports 100x as its
#: parameter count, and the spec says so.
SIZES = [1000, 3000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]


def spec_doc(**design: Any) -> dict[str, Any]:
    return {
        "task": {"name": "known-law"},
        "trainer": {"command": [sys.executable, str(HERE / "contract_trainer.py")],
                    "env": [{"name": "JOINT_LAW", "value": ",".join(map(str, LAW))}]},
        "dataSizes": {"min": 1000, "max": 10**9},
        "modelSizes": {"values": SIZES, "parameters": [100 * m for m in SIZES]},
        "fit": {"bootstrap": 100},
        "design": {"strategy": "isoflop", **design},
    }  # fmt: skip


def law(n: float, d: float) -> float:
    e, a, alpha, b, beta = LAW
    return float(e + a / n**alpha + b / d**beta)


def optimum(c: float) -> float:
    """N* of L(N, C / (6 N)) in closed form."""
    _, a, alpha, b, beta = LAW
    g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
    return float(g * (c / 6) ** (beta / (alpha + beta)))


def test_each_budget_trains_the_data_size_that_spends_it_and_lists_what_falls_outside() -> None:
    spec = parse_spec(spec_doc(computeBudgets={"values": [6e12, 6e13, 6e15]},
                               flopsPerParameterPerItem=6))  # fmt: skip
    plan = isoflop_plan(spec)
    for cell in plan.cells:
        assert cell.data_size == round(cell.compute / (6 * cell.parameters))
        assert 1000 <= cell.data_size <= 10**9
    # 6e12 / (6 x 1e9 parameters) = 1000 is in; 6e15 / (6 x 1e5) = 1e10 is above 1e9.
    assert plan.skipped[0] == ("C=6e+15 model size 1000: data size 10000000000 above "
                               "dataSizes max 1000000000")  # fmt: skip
    assert len(plan.skipped) == 2  # 3e5 parameters: 3.3e9 is above too
    assert len(plan.cells) + len(plan.skipped) == 3 * len(SIZES)
    trials = plan_trials("iso", spec)
    assert len({t.name for t in trials}) == len(trials) == len(plan.cells)
    assert trials[0].data_size == plan.cells[0].data_size  # the smallest budget first


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"design": {"strategy": "isoflop"}}, "strategy: isoflop needs computeBudgets"),
        ({"design": {"computeBudgets": {"values": [1e12]}}}, "computeBudgets needs it"),
        ({"modelSizes": {"values": [1, 2, 3], "parameters": [10, 20]}},
         "one parameter count per value"),
        ({"modelSizes": {"values": [1, 2]}}, "at least 3 model sizes"),
        ({"design": {"strategy": "isoflop", "computeBudgets": {"min": 1e12, "max": 1e11}}},
         "min < max"),
        # Budgets so small that only the smallest sizes reach dataSizes' minimum.
        ({"design": {"strategy": "isoflop", "computeBudgets": {"values": [6e8, 6e9, 6e10]}}},
         r"only 2 budget\(s\) train 3 or more model sizes .*\(C=6e\+08: 1, C=6e\+09: 3"),
    ],
)  # fmt: skip
def test_a_malformed_isoflop_study_is_refused_naming_the_field(
    change: dict[str, Any], message: str
) -> None:
    doc = {**spec_doc(computeBudgets={"values": [1e15, 1e16, 1e17]}), **change}
    parse_spec(spec_doc(computeBudgets={"values": [1e15, 1e16, 1e17]}))  # the base is valid
    with pytest.raises(SpecError, match=message):
        parse_spec(doc)


def iso_points(budgets: list[float], sizes_per_budget: int, offset: float = 0.0,
               noise: float = 0.0, seed: int = 0) -> list[IsoPoint]:  # fmt: skip
    rng = np.random.default_rng(seed)
    out = []
    for c in budgets:
        centre = np.log(optimum(c)) + offset
        for x in centre + np.log(2.0) * (np.arange(sizes_per_budget) - sizes_per_budget // 2):
            n = float(np.exp(x))
            d = c / (6 * n)
            out.append(IsoPoint(c, n, law(n, d) * float(np.exp(rng.normal(0, noise))), d))
    return out


def test_both_methods_find_the_exponent_of_a_known_law_with_intervals_that_hold_it() -> None:
    warnings: list[str] = []
    points = iso_points([1e18, 1e19, 1e20, 1e21], 7, noise=0.01)
    report = compute_optimal(points, 6.0, 0.9, 200, 0, warnings, joint_replicates=30)
    assert report is not None and report.per_budget and report.joint
    for pair in (report.per_budget, report.joint):
        assert abs(pair.a - A_TRUE) < 0.03 and abs(pair.b - (1 - A_TRUE)) < 0.03
        lo, hi = pair.a_interval
        assert lo is not None and hi is not None and lo <= A_TRUE <= hi
    for b in report.budgets:
        assert b.best_parameters is not None and b.interval[0] and b.interval[1]
        assert (
            b.interval[0] <= optimum(b.compute) * 1.6 and b.interval[1] >= optimum(b.compute) / 1.6
        )
    assert report.method == "per-budget" and report.model_size_exponent == report.per_budget.a


def test_an_exponent_that_rests_on_one_trial_says_so() -> None:
    """One bad evaluation near an optimum (a loss 25% too low, two sizes above it) drags
    that budget's vertex and the exponent with it: the report names the trial."""
    budgets = [1e18, 1e19, 1e20, 1e21]
    points = iso_points(budgets, 7, noise=0.005, seed=3)
    clean: list[str] = []
    assert compute_optimal(points, 6.0, 0.9, 200, 0, clean, joint_replicates=5) is not None
    assert not [w for w in clean if "rests on one trial" in w]
    bad = list(points)
    i = 7 * 3 + 5  # the largest budget, two sizes above its optimum
    bad[i] = IsoPoint(bad[i].compute, bad[i].parameters, bad[i].loss * 0.75, bad[i].data_size)
    warnings: list[str] = []
    report = compute_optimal(bad, 6.0, 0.9, 200, 0, warnings, joint_replicates=5)
    assert report is not None and report.per_budget is not None
    (moved,) = [w for w in warnings if "rests on one trial" in w]
    assert f"C = {budgets[3]:.3g}, N = {bad[i].parameters:.3g}" in moved


def test_an_optimum_beyond_the_sizes_tried_is_an_open_interval_and_says_what_to_add() -> None:
    warnings: list[str] = []
    # The last budget's model sizes all lie well below its optimum.
    points = iso_points([1e18, 1e19, 1e20], 5) + iso_points([1e21], 5, offset=-4.0)
    report = compute_optimal(points, 6.0, 0.9, 100, 0, warnings, joint_replicates=10)
    assert report is not None
    edge = [b for b in report.budgets if b.at_edge]
    assert len(edge) == 1 and edge[0].at_edge == "above" and edge[0].best_parameters is None
    assert edge[0].interval[1] is None and edge[0].interval[0] is not None
    assert any("add larger model sizes at C = 1e+21" in w for w in warnings)
    # The line goes through the three interior budgets only: still the truth.
    assert report.per_budget is not None and abs(report.per_budget.a - A_TRUE) < 0.02


def test_compute_that_forms_no_budgets_gives_no_per_budget_answer_and_says_why() -> None:
    rng = np.random.default_rng(1)
    points = []
    for _ in range(60):
        n, d = 10 ** rng.uniform(7, 9), 10 ** rng.uniform(9, 11)
        points.append(IsoPoint(6 * n * d, n, law(n, d), d))
    warnings: list[str] = []
    report = compute_optimal(points, 6.0, 0.9, 50, 0, warnings, joint_replicates=10)
    assert report is not None and report.per_budget is None and report.method == "joint"
    assert any("does not form budgets" in w for w in warnings)


def test_the_fit_of_a_csv_with_compute_reports_the_compute_optimal_object(tmp_path: Path) -> None:
    rows = ["data_size,loss,parameters,compute"] + [
        f"{p.data_size},{p.loss},{p.parameters},{p.compute}"
        for p in iso_points([1e18, 1e19, 1e20, 1e21], 5, noise=0.003)
    ]
    csv_file = tmp_path / "iso.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    out = run_cli("fit", str(csv_file), "--json", "--bootstrap", "100")
    assert out.returncode == 0, out.stderr
    co = json.loads(out.stdout)["compute_optimal"]
    for key in ("model_size_exponent", "model_size_exponent_interval", "data_size_exponent",
                "data_size_exponent_interval", "budgets", "method"):  # fmt: skip
        assert key in co
    assert abs(co["model_size_exponent"] - A_TRUE) < 0.03
    assert {"compute", "best_parameters", "interval", "loss"} <= set(co["budgets"][0])
    table = run_cli("fit", str(csv_file), "--bootstrap", "50")
    assert "Compute-optimal allocation (C = 6 N D)" in table.stdout
    # Without resamples there is no interval to give: open ends, not a crash.
    bare = run_cli("fit", str(csv_file), "--json", "--bootstrap", "0")
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout)["compute_optimal"]["model_size_exponent_interval"] == [
        None,
        None,
    ]


def test_without_compute_the_fit_has_no_compute_optimal_object() -> None:
    points = [Point(data_size=d, loss=1 + d**-0.3) for d in (100, 200, 400, 800, 1600)]
    assert fit_points(points, FitOptions(bootstrap=20)).compute_optimal is None


def test_an_isoflop_study_runs_locally_and_finds_the_known_exponent(tmp_path: Path) -> None:
    doc = {"apiVersion": "scalingstudy.io/v1alpha1", "kind": "ScalingStudy",
           "metadata": {"name": "iso"},
           "spec": spec_doc(computeBudgets={"min": 6e15, "max": 6e18, "factor": 10})}  # fmt: skip
    study = tmp_path / "iso.yaml"
    study.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    result = run_cli("run", str(study), "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    design = json.loads((out / "design.json").read_text())
    assert design["strategy"] == "isoflop" and design["outOfRange"]
    co = json.loads((out / "fit.json").read_text())["compute_optimal"]
    assert abs(co["per_budget"]["a"] - A_TRUE) < 0.03
    assert abs(co["joint"]["a"] - A_TRUE) < 0.03
    assert "Compute-optimal allocation" in result.stdout
    page = render(out / "report.html")
    assert page.problems == [] and page.image_widths["plot"] > 500
    assert f"{co['per_budget']['a']:.3f}" in page.text


def test_no_interval_is_zero_wide_where_the_data_leave_nothing_to_measure() -> None:
    """Three sizes fix a budget's parabola exactly, and noise-free trials give a bootstrap
    without spread: both are intervals the data cannot bound, so both ends are open."""
    points = iso_points([1e18, 1e19], 5) + iso_points([1e20], 3)
    report = compute_optimal(points, 6.0, 0.9, 50, 0, [], joint_replicates=10)
    assert report is not None and report.joint is not None
    assert report.budgets[-1].best_parameters is not None
    assert report.budgets[-1].interval == [None, None]
    assert report.joint.a_interval == [None, None] and report.joint.b_interval == [None, None]


def test_a_budget_range_ends_at_max_without_a_near_duplicate() -> None:
    """1e11 to 1e12 by 3.16 made 1e11, 3.16e11, 9.9856e11 and 1e12: the most expensive
    budget trained twice and counted as two (issue 37). The last step now stretches to
    max, as a size range's does."""
    spec = parse_spec(spec_doc(computeBudgets={"min": 1e11, "max": 1e12, "factor": 3.16}))
    assert spec.design.compute_budgets is not None
    assert spec.design.compute_budgets.sizes() == [1e11, 3.16e11, 1e12]
    spec = parse_spec(spec_doc(computeBudgets={"min": 1e11, "max": 1e13, "factor": 4}))
    assert spec.design.compute_budgets is not None
    # 1e11 x 4^3 = 6.4e12 leaves 1.56x to 1e13, under sqrt(4): stretched, not a sliver.
    assert spec.design.compute_budgets.sizes() == [1e11, 4e11, 1.6e12, 1e13]


def test_a_factor_too_small_to_separate_budgets_is_refused_with_the_budgets_it_makes() -> None:
    with pytest.raises(SpecError, match=r"factor must be at least 1.6.*factor 1.2 makes 1e\+11, "
                                        r"1.2e\+11, 1.44e\+11"):  # fmt: skip
        parse_spec(spec_doc(computeBudgets={"min": 1e11, "max": 1e12, "factor": 1.2}))
    with pytest.raises(SpecError, match=r"a factor of at least 1.25 apart"):
        parse_spec(spec_doc(computeBudgets={"values": [1e15, 1.1e15, 1e16, 1e17]}))


def test_budgets_that_the_fit_would_merge_are_refused_naming_them() -> None:
    """Listed budgets 1.25x apart are one budget to the fit when D is so small that its
    rounding moves a trial's compute by 10%: refused, not trained as duplicates."""
    doc = spec_doc(computeBudgets={"values": [6e9, 7.5e9, 6e11, 6e12]})
    doc["dataSizes"] = {"min": 1, "max": 10**9}
    with pytest.raises(SpecError, match=r"budgets C=6e\+09, C=7.5e\+09 would be one budget"):
        parse_spec(doc)


def test_planned_trial_names_are_distinct_over_random_budget_ranges() -> None:
    """Issue 42: budgets close together gave the same trial twice (12 planned, 9
    distinct). Over 400 random ranges and lists of budgets, factors from 1.05 to 20 and
    data-size bounds from 1: a study is refused or its trials have distinct names, one
    per planned cell, and the fit groups them into exactly the planned budgets."""
    from scalingstudy.planning.isoflop import compute_of
    from scalingstudy.spec.isoflop_grid import group_budgets

    rng = np.random.default_rng(7)
    planned = 0
    for i in range(400):
        low = 10 ** rng.uniform(8, 16)
        if rng.random() < 0.7:
            factor = float(rng.choice([1.05, 1.2, 1.6, 2, 3.16, 10, rng.uniform(1.01, 20)]))
            budgets: dict[str, Any] = {
                "min": low, "max": low * 10 ** rng.uniform(0.2, 4), "factor": factor
            }  # fmt: skip
        else:
            budgets = {"values": sorted(low * 10 ** rng.uniform(0, 3, int(rng.integers(3, 9))))}
        doc = spec_doc(computeBudgets=budgets)
        doc["dataSizes"] = {"min": int(rng.choice([1, 2, 10, 1000])), "max": 10**9}
        try:
            spec = parse_spec(doc)
        except SpecError:
            continue
        planned += 1
        trials = plan_trials(f"iso{i}", spec)
        cells = isoflop_plan(spec).cells
        assert len({t.name for t in trials}) == len(trials) == len(cells), budgets
        groups = group_budgets([compute_of(spec, t.data_size, t.model_size) for t in trials])
        assert len(groups) == len({c.compute for c in cells}), budgets
    assert planned > 100


# --------------------------------------------------------------------------- N and the joint law
#: Widths whose parameter count is not the knob: N = width^2, 1e5 to 1e9 (a law in N has
#: exponent A_TRUE; read in widths it would be half).
WIDTHS = [316, 548, 1000, 1732, 3162, 5477, 10_000, 17_321, 31_623]
WIDTH_TRAINER = """
import os, sys
from scalingstudy_sdk.report import report_result
e, a, alpha, b, beta = (float(x) for x in os.environ["JOINT_LAW"].split(","))
n = float(os.environ["SCALINGSTUDY_MODEL_SIZE"]) ** 2 / 100  # the law's N, as in SIZES
d = float(os.environ["SCALINGSTUDY_DATA_SIZE"])
loss = e + a / n**alpha + b / d**beta
report_result({"validation_loss": loss, "steps": 1}, dict(os.environ))  # no parameters
"""


def width_spec(tmp_path: Path) -> dict[str, Any]:
    trainer = tmp_path / "width_trainer.py"
    trainer.write_text(WIDTH_TRAINER)
    doc = spec_doc(computeBudgets={"min": 6e15, "max": 6e18, "factor": 10})
    doc["trainer"] = {
        "command": [sys.executable, str(trainer)],
        "env": [{"name": "JOINT_LAW", "value": ",".join(map(str, LAW))}],
    }
    doc["modelSizes"] = {"values": WIDTHS, "parameters": [float(w * w) for w in WIDTHS]}
    return doc  # fmt: skip


def test_the_fit_reads_n_as_the_listed_count_not_the_width(tmp_path: Path) -> None:
    """Issue 37: widths with modelSizes.parameters listed and a trainer that reports no
    count: D was planned with the listed N, but the fit took the width for N (a = 0.227
    for a true 0.452, "best parameters" 950: a width). The planned count is N; a report
    that disagrees with it by more than 5% is a warning, not a second N."""
    from scalingstudy.planning.isoflop import fit_parameters, parameter_warnings, planned_parameters

    spec = parse_spec(width_spec(tmp_path))
    planned = planned_parameters(spec)
    assert planned == {w: float(w * w) for w in WIDTHS}
    assert fit_parameters(planned, 1000, None) == 1e6  # not 1000
    assert fit_parameters(planned, 1000, 1.03e6) == 1e6  # within 5%: the plan's N
    assert fit_parameters(planned, 7, 123.0) == 123.0  # a size the spec says nothing of
    assert parameter_warnings(planned, [(1000, 1.03e6), (316, None)]) == []
    (warning,) = parameter_warnings(planned, [(1000, 2e6), (1000, 2e6)])
    assert "model size 1000: the trainer reports 2,000,000 parameters, the spec 1,000,000" in (
        warning
    )
    # A grid study without a list: the trainer's report stands.
    grid = parse_spec({**spec_doc(computeBudgets={"values": [1e15, 1e16, 1e17]}),
                       "design": {}, "modelSizes": {"values": WIDTHS}})  # fmt: skip
    assert planned_parameters(grid) == {}


def test_a_width_study_whose_trainer_reports_no_count_finds_the_known_exponent(
    tmp_path: Path,
) -> None:
    doc = {"apiVersion": "scalingstudy.io/v1alpha1", "kind": "ScalingStudy",
           "metadata": {"name": "widths"}, "spec": width_spec(tmp_path)}  # fmt: skip
    study = tmp_path / "widths.yaml"
    study.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    result = run_cli("run", str(study), "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    co = json.loads((out / "fit.json").read_text())["compute_optimal"]
    assert abs(co["per_budget"]["a"] - A_TRUE) < 0.03
    best = [b["best_parameters"] for b in co["budgets"] if b["best_parameters"]]
    assert best and min(best) > max(WIDTHS)  # parameter counts, not widths


def iso_fit_points(noise: float = 0.01) -> list[Point]:
    return [Point(data_size=p.data_size, loss=p.loss, parameters=p.parameters,
                  compute=p.compute)
            for p in iso_points([1e18, 1e19, 1e20, 1e21, 1e22], 7, noise=noise)]  # fmt: skip


def test_the_studys_joint_law_is_fitted_to_every_trial() -> None:
    """Issue 37: fit.joint of an IsoFLOP study was fitted to the frontier (one trial per
    budget: 5 points for 5 parameters; a = 0.103 where the truth is 0.452). The study's
    joint law is the one over every trial, and its compute-optimal exponents carry the
    bootstrap intervals of the compute-optimal report."""
    from scalingstudy.fitting.compute_optimal import isoflop_fit

    points = iso_fit_points()
    warnings: list[str] = []
    fit = isoflop_fit(points, FitOptions(bootstrap=100, joint=True, joint_bootstrap=20), warnings)
    assert fit.joint is not None and fit.joint.n_points == len(points) == 35
    assert abs(fit.joint.compute_optimal.a - A_TRUE) < 0.03
    assert fit.compute_optimal is not None and fit.compute_optimal.joint is not None
    # One law: the report's joint exponents are the joint law's, interval and all.
    assert fit.compute_optimal.joint.a == fit.joint.compute_optimal.a
    assert fit.compute_optimal.joint.a_interval == fit.joint.compute_optimal.a_interval
    lo, hi = fit.compute_optimal.joint.a_interval
    assert lo is not None and hi is not None and lo <= A_TRUE <= hi
    assert len(fit.frontier) == 5 and [p.data_size for p in fit.frontier] == sorted(
        p.data_size for p in fit.frontier
    )
    assert any("joint law and the compute-optimal exponents to every trial (35)" in w
               for w in warnings)  # fmt: skip
    # Without options.joint no law is fitted for fit.joint.
    assert isoflop_fit(points, FitOptions(bootstrap=20), []).joint is None


def test_fit_points_reports_the_joint_law_of_every_isoflop_trial() -> None:
    report = fit_points(iso_fit_points(), FitOptions(bootstrap=50, joint=True,
                                                     joint_bootstrap=10))  # fmt: skip
    assert report.joint is not None and report.joint.n_points == 35
    assert abs(report.joint.compute_optimal.a - A_TRUE) < 0.03


def test_an_isoflop_study_of_a_trainer_of_its_own_fits_the_n_it_planned_with(
    tmp_path: Path,
) -> None:
    """Review of issue 37: without modelSizes.parameters, an IsoFLOP study of a custom
    trainer plans D = C / (k * knob); a trainer that reports its own counts must not
    silently become N (the per-budget a came out 0.554 [0.531, 0.586] for a true 0.452):
    the fit keeps the knob it planned with, and the reports that differ are warnings."""
    from scalingstudy.planning.isoflop import fit_parameters, parameter_warnings, planned_parameters

    doc = width_spec(tmp_path)
    doc["modelSizes"] = {"values": WIDTHS}
    doc["design"]["computeBudgets"] = {"min": 6e8, "max": 6e11, "factor": 10}
    spec = parse_spec(doc)
    planned = planned_parameters(spec)
    assert planned == {w: float(w) for w in WIDTHS}
    assert fit_parameters(planned, WIDTHS[0], 9e5) == float(WIDTHS[0])
    assert parameter_warnings(planned, [(WIDTHS[0], 9e5)])
