"""What a finished study leaves in its output folder: results.csv, design.json, fit.json,
the plot and report.html.

`scalingstudy run` writes them from the records of its own trials and `scalingstudy get`
from a cluster study's status, through this one function, so that a study looks the same
wherever it ran.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalingstudy.curve_rows import CURVE_COLUMNS, CURVES_FILE, CurveTrial, of_record, rows
from scalingstudy.fitting import FitError, fit_points
from scalingstudy.fitting.report import FitReport
from scalingstudy.render.curves_html import TrialLine
from scalingstudy.render.html import ReportInput, render_report
from scalingstudy.render.table import design_line, format_fit, learning_rate_lines
from scalingstudy.results import NOT_FITTABLE, best_learning_rates, fit_input, fittable, points_of
from scalingstudy.spec import ScalingStudySpec
from scalingstudy.status import CSV_COLUMNS, DesignStatus, TrialRecord
from scalingstudy_sdk.atomic import write_atomic
from scalingstudy_sdk.curve import Curve


@dataclass
class StudyOutput:
    fit: FitReport | None = None
    fit_error: str | None = None
    files: dict[str, Path] = field(default_factory=dict)


def print_summary(out: StudyOutput, design: DesignStatus | None) -> None:
    """What `run` and `get` print after the folder is written: an adaptive design's line,
    the learning-rate winners, the fit (or why there is none) and the files."""
    if design is not None and design.strategy == "adaptive":
        print(design_line(design))
    for line in learning_rate_lines(design) if design else []:
        print(line)
    if out.fit is not None:
        print(format_fit(out.fit))
    else:
        print(f"no fit: {out.fit_error}", file=sys.stderr)
    for label, path in out.files.items():
        print(f"wrote {label}: {path}")


def write_results_csv(path: Path, records: Collection[TrialRecord]) -> Path:
    """The fit CSV (DESIGN §5) plus columns: succeeded trials only."""
    rows = sorted(
        (r for r in records if r.status == "Succeeded"),
        key=lambda r: (r.data_size, r.model_size, r.seed, r.learning_rate or 0.0),
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r.csv_row())
    write_atomic(path, buffer.getvalue())
    return path


def curve_trials(
    records: Collection[TrialRecord], curves: Mapping[str, Curve], running: Sequence[CurveTrial]
) -> list[TrialLine]:
    """The trials with a curve, in the order results.csv lists them, running ones after."""
    ordered = sorted(records, key=lambda r: (r.data_size, r.model_size, r.seed,
                                             r.learning_rate or 0.0, r.trial))  # fmt: skip
    known = [of_record(r) for r in ordered]
    names = {t.trial for t in known}
    trials = known + [t for t in running if t.trial not in names]
    return [TrialLine(t, curves[t.trial]) for t in trials if t.trial in curves]


def write_curves_csv(path: Path, lines: Sequence[TrialLine]) -> Path | None:
    """curves.csv: one row per evaluation of every trial that printed one (each curve
    thinned to at most MAX_POINTS); not written when no trial did."""
    table = rows([line.trial for line in lines], {line.trial.trial: line.curve for line in lines})
    if not table:
        return None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CURVE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_atomic(path, buffer.getvalue())
    return path


def write_json(path: Path, payload: Any) -> Path:
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def units(spec: ScalingStudySpec) -> tuple[str, str]:
    """What a data size and the loss count, for the plot's axes (built-in tasks only)."""
    if spec.trainer.command:
        return "items", ""
    if spec.task.name == "char-lm":
        unit = "tokens" if spec.task.options.get("tokens") else "bytes"
        return unit, f"nats per {unit[:-1]}"
    if spec.task.name == "image-classification":
        return "examples", "nats"
    return "examples", "MSE"


def write_study_output(
    root: Path,
    title: str,
    spec: ScalingStudySpec,
    records: Collection[TrialRecord],
    design: DesignStatus | None,
    source: str,
    curves: Mapping[str, Curve] | None = None,
    running: Sequence[CurveTrial] = (),
) -> StudyOutput:
    """results.csv always; curves.csv when a trial printed evaluations (``curves``, by
    trial name; ``running`` places trials without a record); the fit, fit.json and the
    plot when the results allow; the report in either case (a study without a fit still
    has trials to look at). ``source`` says where the study ran, for the report's header."""
    root.mkdir(parents=True, exist_ok=True)
    out = StudyOutput()
    out.files["results"] = write_results_csv(root / "results.csv", records)
    lines = curve_trials(records, curves or {}, running)
    curves_csv = write_curves_csv(root / CURVES_FILE, lines)
    if curves_csv is not None:
        out.files["curves"] = curves_csv
    if design is not None:
        out.files["design"] = write_json(
            root / "design.json", design.model_dump(mode="json", by_alias=True, exclude_none=True)
        )
    plot: Path | None = None
    if not fittable(records):
        out.fit_error = NOT_FITTABLE
    else:
        try:
            out.fit = fit_points(*fit_input(records, spec))
        except FitError as exc:
            out.fit_error = str(exc)
    if out.fit is not None:
        out.files["fit"] = write_json(root / "fit.json", out.fit.to_json())
        plot = _plot(root / "learning_curve.png", title, spec, records, out.fit)
        out.files["plot"] = plot
    report = ReportInput(
        title=title,
        source=source,
        records=tuple(records),
        fit=out.fit,
        fit_error=out.fit_error,
        design=design,
        plot_png=plot.read_bytes() if plot else None,
        curves=lines,
    )
    out.files["report"] = root / "report.html"
    write_atomic(out.files["report"], render_report(report))
    return out


def _plot(
    path: Path, title: str, spec: ScalingStudySpec, records: Collection[TrialRecord],
    fit: FitReport,
) -> Path:  # fmt: skip
    from scalingstudy.render.plot import plot_study

    winners = {(float(c.data_size), float(c.model_size)): c.learning_rate
               for c in best_learning_rates(records)}  # fmt: skip
    unit, loss_unit = units(spec)
    return plot_study(points_of(records, spec), fit, path, title=title, learning_rates=winners,
                      unit=unit, loss_unit=loss_unit)  # fmt: skip
