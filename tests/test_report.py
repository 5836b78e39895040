"""report.html and the output folder that `run` and `get` share (issue 27): one page with
the plot, the exponents with honest intervals, warnings and the trials, that a real
browser renders without an error and without running anything from the data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from scalingstudy.fitting import fit_points
from scalingstudy.planning.plan import Plan
from scalingstudy.render.html import ReportInput, render_report
from scalingstudy.render.output import write_study_output
from scalingstudy.results import fit_options, points_of
from scalingstudy.spec import parse_spec
from scalingstudy.status import TrialRecord
from tests.browser import render

SPEC = parse_spec({
    "task": {"name": "teacher-student"},
    "dataSizes": {"values": [250, 500, 1000, 2000, 4000, 8000]},
    "modelSizes": {"values": [8, 32]}, "fit": {"bootstrap": 60},
})  # fmt: skip
HOSTILE = "<script>document.title='owned'</script><img src=x onerror=alert(1)>"


def records(fail_first: bool = True) -> list[TrialRecord]:
    rng = np.random.default_rng(3)
    out = []
    for i, t in enumerate(Plan.of("demo", SPEC)):
        if fail_first and i == 0:
            out.append(TrialRecord.failed(t, "Error", f"Traceback\n{HOSTILE}", 3.0))
            continue
        loss = 0.2 + 4 * t.data_size**-0.45 + 0.3 * t.model_size**-0.5
        out.append(TrialRecord(
            trial=t.name, data_size=t.data_size, model_size=t.model_size, seed=t.seed,
            status="Succeeded", loss=float(loss * np.exp(rng.normal(0, 0.01))),
            parameters=10 * t.model_size, duration_seconds=12.0,
        ))  # fmt: skip
    return out


def test_the_output_folder_and_its_report_in_a_real_browser(tmp_path: Path) -> None:
    recs = records()
    out = write_study_output(tmp_path, "demo", SPEC, recs, None, "local run in here")
    assert set(out.files) == {"results", "fit", "plot", "report"} and out.fit is not None
    rows = list(csv.DictReader(out.files["results"].open()))
    assert len(rows) == len(recs) - 1  # succeeded trials only
    beta = json.loads(out.files["fit"].read_text())["learning_curve"]["beta"]
    assert beta == out.fit.learning_curve.beta
    html = out.files["report"].read_text()
    assert "<script>" not in html and "http" not in html  # self-contained, nothing to run
    page = render(out.files["report"])
    assert page.problems == [] and page.scripts == 0
    assert page.image_widths["plot"] > 500  # the inlined plot decodes
    assert f"{beta:.4f}" in page.text and "beta_g" in page.text
    lo, hi = out.fit.learning_curve.beta_interval or (None, None)
    assert lo is not None and hi is not None and f"[{lo:.4g}, {hi:.4g}]" in page.text
    # The failed trial is listed with its message as text, not markup.
    assert "11 trials succeeded, 1 failed" in page.text and HOSTILE in page.text
    for w in out.fit.warnings:
        assert w in page.text


def test_an_open_interval_reads_unbounded_and_a_missing_beta_p_says_why() -> None:
    recs = records(fail_first=False)
    fit = fit_points(points_of(recs), fit_options(SPEC))
    lc = fit.learning_curve.model_copy(update={"beta_interval": [None, -0.2]})
    assert fit.model_size is not None
    ms = fit.model_size.model_copy(update={"beta": None, "reason": "add larger model sizes"})
    opened = fit.model_copy(update={"learning_curve": lc, "model_size": ms})
    html = render_report(ReportInput("demo", "here", recs, opened, None, None, None))
    assert "[unbounded, -0.2]" in html and "None" not in html
    assert "beta_p (model size)</td><td>null" in html and "add larger model sizes" in html


def test_a_study_without_a_fit_still_gets_its_report(tmp_path: Path) -> None:
    few = [r for r in records(fail_first=False) if r.data_size == 250]
    out = write_study_output(tmp_path, "demo", SPEC, few, None, "cluster study ns/demo")
    assert out.fit is None and out.fit_error and set(out.files) == {"results", "report"}
    html = out.files["report"].read_text()
    assert "no fit:" in html and "<img" not in html and "cluster study ns/demo" in html
