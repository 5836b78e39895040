"""`scalingstudy fit` and `scalingstudy plot`: the fit of a CSV of trial results, with
the same defaults as a run's (and with --study, the run's own settings and trials)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalingstudy.fitting.options import DEFAULT_BOOTSTRAP, FORMS
from scalingstudy.render.table import format_fit
from scalingstudy.usage import fail

if TYPE_CHECKING:
    from scalingstudy.fitting.report import FitReport


def _sizes(text: str) -> list[float]:
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a number") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{part!r} must be a finite number > 0")
        values.append(value)
    return values


def _positive(text: str) -> float:
    return _sizes(text)[0]


def default_options(points: list[Any]) -> Any:
    """A run's fit settings for points without a study: a prediction at 10x the largest
    data size, the joint law with 3 or more model sizes (`results.fit_options`)."""
    from scalingstudy.fitting import FitOptions

    largest = max(p.data_size for p in points)
    return FitOptions(predict_at=(10 * largest,), joint=len({p.model_size for p in points}) >= 3)


def _fit_input(args: argparse.Namespace) -> tuple[list[Any], Any]:
    """The points and options of `scalingstudy fit`: with ``--study`` those of the run that
    wrote the CSV (its planned trials, its fit settings), so the numbers are fit.json's;
    else the CSV's rows with defaults that match a run's (a prediction at 10x the largest
    data size, the joint law with 3 or more model sizes). Flags given override."""
    from scalingstudy.pointsfile import PointsFileError, read_points, read_records
    from scalingstudy.results import fit_input, planned_records
    from scalingstudy.spec import SpecError, load_study

    try:
        if args.study:
            study = load_study(args.study)
            records = read_records(args.points)
            spec = study.spec
            points, options = fit_input(planned_records(study.metadata.name, spec, records), spec)
        else:
            points = read_points(args.points)
            options = default_options(points)
    except (PointsFileError, SpecError) as exc:
        fail(str(exc) if isinstance(exc, PointsFileError) else f"{args.study}: {exc}")
    return points, _overridden(options, args)


#: The FitOptions fields a command-line flag of the same name (where the command has
#: one) overrides when given.
_FLAGS = ("form", "confidence", "bootstrap", "predict_at", "target_loss", "joint",
          "flops_per_parameter_per_item")  # fmt: skip


def _overridden(options: Any, args: argparse.Namespace) -> Any:
    """``options`` with every flag the user gave in its place (an unset flag is None)."""
    given = {name: getattr(args, name, None) for name in _FLAGS}
    if given["predict_at"] is not None:
        given["predict_at"] = tuple(given["predict_at"])
    return dataclasses.replace(options, **{k: v for k, v in given.items() if v is not None})


def cmd_fit(args: argparse.Namespace) -> int:
    from scalingstudy.fitting import FitError

    points, options = _fit_input(args)
    from scalingstudy.fitting import fit_points  # numpy and scipy: once the input reads

    try:
        report = fit_points(points, options)
    except FitError as exc:
        fail(str(exc))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_fit(report))
    return 0


def _read_fit_json(source: Path) -> FitReport:
    from pydantic import ValidationError

    from scalingstudy.fitting.report import FitReport

    try:
        raw = json.loads(source.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"{source}: not a readable fit JSON ({exc})")
    if not isinstance(raw, dict) or "learning_curve" not in raw or "best" not in raw:
        fail(f"{source}: not a fit report (no learning_curve and best)")
    try:
        return FitReport.from_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        fail(f"{source}: not a fit report: {where}: {first['msg']}")


def cmd_plot(args: argparse.Namespace) -> int:
    """A results CSV is fitted first; a fit JSON (from `fit --json` or a run's fit.json)
    is drawn as it is, without the individual trials."""
    from scalingstudy.fitting import FitError, fit_points
    from scalingstudy.pointsfile import PointsFileError, read_points
    from scalingstudy.render.plot import plot_study

    source, out = Path(args.input), Path(args.output)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail(f"-o {out}: the file name must end in .png, .svg or .pdf")
    points = []
    try:
        if source.suffix.lower() == ".json":
            if args.predict_at or args.bootstrap is not None:
                fail(
                    "--predict-at and --bootstrap refit the points: give the results CSV; "
                    "a fit JSON is drawn as it was fitted"
                )
            fit = _read_fit_json(source)
        else:
            points = read_points(str(source))
            fit = fit_points(points, _overridden(default_options(points), args))
    except (PointsFileError, FitError) as exc:
        fail(str(exc))
    # A run's results.csv or fit.json lies in the study's output folder: name the study.
    default_title = source.parent.name if source.stem in ("results", "fit") else source.stem
    plot_study(points, fit, out, title=args.title or default_title)
    print(out)
    return 0


def add_fit_commands(sub: Any) -> None:
    """The `fit` and `plot` subcommands."""
    _add_fit(sub)
    _add_plot(sub)


def _add_fit(sub: Any) -> None:
    fit = sub.add_parser("fit", help="fit the power laws to a CSV of trial results")
    fit.add_argument(
        "points",
        help="CSV with columns data_size, loss [, model_size, seed, "
        "parameters, compute, learning_rate] (a run's results.csv reads as is)",
    )
    fit.add_argument(
        "--study",
        metavar="STUDY.yaml",
        help="the study that wrote the CSV: fit its planned trials with its fit "
        "settings, exactly as its run's fit.json (flags below override; default: "
        "none, every row with a run's default settings)",
    )
    fit.add_argument(
        "--predict-at",
        type=_sizes,
        metavar="M[,M...]",
        help="data sizes to predict the loss at (default: 10x the largest)",
    )
    fit.add_argument(
        "--target-loss",
        type=_positive,
        metavar="L",
        help="report the data size needed to reach this loss (default: none)",
    )
    fit.add_argument(
        "--form",
        choices=FORMS,
        default=None,
        help="learning-curve form (default: auto, chosen by AICc)",
    )
    fit.add_argument(
        "--confidence", type=float, default=None, help="level of every interval (default: 0.9)"
    )
    fit.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        help=f"bootstrap resamples (default: {DEFAULT_BOOTSTRAP})",
    )
    fit.add_argument(
        "--joint",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022) "
        "(default: with 3 or more model sizes)",
    )
    fit.add_argument(
        "--flops-per-parameter-per-item",
        type=_positive,
        default=None,
        metavar="K",
        help="with a compute column: C = K N D (default 6, forward and backward per token)",
    )
    fit.add_argument(
        "--json", action="store_true", help="one JSON object on stdout (default: a table)"
    )
    fit.set_defaults(func=cmd_fit)


def _add_plot(sub: Any) -> None:
    plot = sub.add_parser("plot", help="draw the learning curve of a results CSV or fit JSON")
    plot.add_argument("input", help="results.csv (fitted first) or a fit JSON")
    plot.add_argument(
        "-o", "--output", required=True, help="out.png, out.svg or out.pdf (required)"
    )
    plot.add_argument(
        "--predict-at",
        type=_sizes,
        metavar="M[,M...]",
        help="data sizes to extrapolate to (a CSV input only; default: 10x the largest)",
    )
    plot.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        help=f"resamples for the band (a CSV input only; default {DEFAULT_BOOTSTRAP})",
    )
    plot.add_argument(
        "--title",
        default=None,
        help="plot title (default: the study folder's name for a results.csv or "
        "fit.json, else the file's name)",
    )
    plot.set_defaults(func=cmd_plot)
