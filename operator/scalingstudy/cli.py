"""The ``scalingstudy`` command. Bad input exits 2 with one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from scalingstudy.fitting.options import DEFAULT_BOOTSTRAP, FORMS
from scalingstudy.report_table import format_fit
from scalingstudy.usage import EXIT_BAD_INPUT, fail

if TYPE_CHECKING:
    from scalingstudy.fitting.report import FitReport
    from scalingstudy.local.warm import WarmStarter


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


def _fit_input(args: argparse.Namespace) -> tuple[list[Any], Any]:
    """The points and options of `scalingstudy fit`: with ``--study`` those of the run that
    wrote the CSV (its planned trials, its fit settings), so the numbers are fit.json's;
    else the CSV's rows with defaults that match a run's (a prediction at 10x the largest
    data size, the joint law with 3 or more model sizes). Flags given override."""
    from scalingstudy.fitting import FitOptions
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
            largest = max(p.data_size for p in points)
            options = FitOptions(
                predict_at=(10 * largest,), joint=len({p.model_size for p in points}) >= 3
            )
    except (PointsFileError, SpecError) as exc:
        fail(str(exc) if isinstance(exc, PointsFileError) else f"{args.study}: {exc}")
    given = {
        "form": args.form,
        "confidence": args.confidence,
        "bootstrap": args.bootstrap,
        "predict_at": None if args.predict_at is None else tuple(args.predict_at),
        "target_loss": args.target_loss,
        "joint": args.joint,
        "flops_per_parameter_per_item": args.flops_per_parameter_per_item,
    }
    return points, dataclasses.replace(options, **{k: v for k, v in given.items() if v is not None})


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
    from scalingstudy.fitting import FitError, FitOptions, fit_points
    from scalingstudy.plot import plot_study
    from scalingstudy.pointsfile import PointsFileError, read_points

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
            bootstrap = DEFAULT_BOOTSTRAP if args.bootstrap is None else args.bootstrap
            options = FitOptions(bootstrap=bootstrap, predict_at=tuple(args.predict_at or ()))
            fit = fit_points(points, options)
    except (PointsFileError, FitError) as exc:
        fail(str(exc))
    # A run's results.csv or fit.json lies in the study's output folder: name the study.
    default_title = source.parent.name if source.stem in ("results", "fit") else source.stem
    plot_study(points, fit, out, title=args.title or default_title)
    print(out)
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    from scalingstudy.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _preflight(study: Any, starter: WarmStarter | None = None) -> None:
    """Catch a wrong task name or option, a missing corpus or one too small for the
    largest subset once, before every trial fails with it: the built-in trainer checks
    the largest trial's environment (`scalingstudy-trainer --check`, forked from the warm
    process when there is one), so this process never loads torch or the data. A study's
    own command: its program and the script or module it runs must exist."""
    from scalingstudy.contract import EXIT_CONFIG_ERROR
    from scalingstudy.local.processes import command_problem, trainer_command
    from scalingstudy.plan import plan_trials
    from scalingstudy.trial_env import trial_environment

    largest = max(plan_trials(study.metadata.name, study.spec), key=lambda t: t.data_size)
    env = trial_environment(
        study.metadata.name, study.metadata.namespace or "", largest, study.spec, result_file=""
    )
    custom = study.spec.trainer.command
    if custom:
        user_env = {e.name: e.value for e in study.spec.trainer.env if e.value is not None}
        command = trainer_command(custom, study.spec.trainer.args)
        problem = command_problem(command, {**os.environ, **user_env, **env})
        if problem:
            fail(f"spec.trainer.command {list(custom)}: {problem}")
        if command[0] != custom[0]:
            print(
                f"scalingstudy: trainer.command runs with {command[0]} (the study's "
                f"Python), not the first {custom[0]!r} on PATH",
                file=sys.stderr,
            )
        return
    code, stderr = _trainer_check({**os.environ, **env}, starter)
    if code == EXIT_CONFIG_ERROR:
        fail(f"spec.task: {stderr.strip().splitlines()[-1]}")
    if code != 0:
        tail = (stderr.strip().splitlines() or [f"exit status {code}"])[-1]
        print(f"scalingstudy: warning: the trainer's check failed: {tail}", file=sys.stderr)


def _trainer_check(env: dict[str, str], starter: WarmStarter | None) -> tuple[int, str]:
    """The built-in trainer's ``--check``: its exit status and stderr."""
    import subprocess
    import tempfile

    from scalingstudy.local.processes import trainer_command
    from scalingstudy.local.warm import WarmStartError

    if starter is not None:
        with tempfile.TemporaryDirectory(prefix="scalingstudy-check-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            with contextlib.suppress(WarmStartError):
                code = starter.start(["--check"], env, out, err).wait()
                return code, err.read_text(errors="replace")
    checked = subprocess.run(
        [*trainer_command(None, None), "--check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return checked.returncode, checked.stderr


def _warm_starter(study: Any, args: argparse.Namespace) -> WarmStarter | None:
    """One warm process for the preflight check and every trial of the built-in trainer
    (``local.warm``); None for a study's own command, ``--cold-start`` or a GPU machine."""
    from scalingstudy.local.processes import trainer_command, warm_starter_for

    if args.cold_start:
        return None
    return warm_starter_for(trainer_command(study.spec.trainer.command, study.spec.trainer.args))


def _dry_run(study: Any, out: Path, workers: int | None) -> int:
    """What the run would do, from the results already in ``out`` (read only): the same
    refusal `run` would give (a different setup, naming the changed fields)."""
    from scalingstudy.local.runner import plan_study
    from scalingstudy.local.store import StoreError

    try:
        lines = plan_study(study, out, workers)
    except StoreError as exc:
        fail(str(exc))
    for line in lines:
        print(line)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    args.dry_run = True
    return cmd_run(args)


def cmd_run(args: argparse.Namespace) -> int:
    from scalingstudy.local.runner import run_study
    from scalingstudy.local.store import StoreError
    from scalingstudy.spec import SpecError, load_study
    from scalingstudy.study_output import StudyOutput, print_summary
    from scalingstudy.study_paths import with_study_paths

    try:
        # Relative paths of trainer.command are read from the study file's folder.
        located = with_study_paths(load_study(args.study), args.study)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"scalingstudy: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    study = located.study
    for note in located.notes:
        print(f"scalingstudy: {note}", file=sys.stderr)
    out = Path(args.out or f"scalingstudy-{study.metadata.name}")
    if args.dry_run:
        _preflight(study)
        return _dry_run(study, out, args.workers)
    from scalingstudy.local.store import ResultStore

    if busy := ResultStore(out).in_use():  # refused before the slow preflight check
        fail(busy)
    starter = _warm_starter(study, args)
    try:
        _preflight(study, starter)
        outcome = run_study(
            study,
            out,
            workers=args.workers,
            progress=not args.quiet,
            warm_start=not args.cold_start,
            starter=starter,
        )
    except StoreError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished trials are kept; run the same command to resume "
            f"(--out {out})",
            file=sys.stderr,
        )
        return 130
    finally:
        if starter is not None:
            starter.close()
    succeeded = sum(r.status == "Succeeded" for r in outcome.records.values())
    failed = sum(r.status == "Failed" for r in outcome.records.values())
    print(
        f"Study {study.metadata.name}: {succeeded}/{len(outcome.planned)} trials succeeded, "
        f"{failed} failed; {outcome.ran} run now, {outcome.wall_seconds:.1f} s"
    )
    for rec in sorted(outcome.records.values(), key=lambda r: r.trial):
        if rec.status == "Failed":
            print(
                f"  failed {rec.trial}: {rec.reason}: {(rec.message or '').splitlines()[-1:]}",
                file=sys.stderr,
            )
    print_summary(StudyOutput(outcome.fit, outcome.fit_error, outcome.files), outcome.design)
    if outcome.failed_reason:
        print(f"study failed: {outcome.failed_reason}", file=sys.stderr)
        return 1
    return 0 if outcome.fit is not None else 1


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line too, with the hint where to look."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from scalingstudy import __version__

    parser = _Parser(
        prog="scalingstudy",
        description="Measure how deep-learning models scale with data and model size.",
    )
    parser.add_argument("--version", action="version", version=f"scalingstudy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a study on this machine")
    run.add_argument("study", help="study YAML (the same file kubectl apply takes)")
    run.add_argument(
        "--out", help="output directory; re-running with it resumes (default: scalingstudy-NAME)"
    )
    run.add_argument(
        "--workers", type=int, default=None, help="trials at once (default: CPU count)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print the grid, the first trials and the expected cost; run nothing",
    )
    run.add_argument(
        "--cold-start",
        action="store_true",
        help="start every trial of the built-in trainer as a fresh Python "
        "(default on a machine without a GPU: forked from one process "
        "that imported torch once)",
    )
    run.set_defaults(func=cmd_run)

    plan = sub.add_parser("plan", help="what `run` would do (same as run --dry-run)")
    plan.add_argument("study", help="study YAML")
    plan.add_argument("--out", help="a run's output directory: plan from its results")
    plan.add_argument("--workers", type=int, default=None, help="trials at once")
    plan.set_defaults(func=cmd_plan)

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
        "settings, exactly as its run's fit.json (flags below override)",
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
    fit.add_argument("--json", action="store_true", help="one JSON object on stdout")
    fit.set_defaults(func=cmd_fit)

    plot = sub.add_parser("plot", help="draw the learning curve of a results CSV or fit JSON")
    plot.add_argument("input", help="results.csv (fitted first) or a fit JSON")
    plot.add_argument("-o", "--output", required=True, help="out.png, out.svg or out.pdf")
    plot.add_argument(
        "--predict-at", type=_sizes, metavar="M[,M...]", help="extrapolate to (a CSV input only)"
    )
    plot.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        help=f"resamples for the band (a CSV input only; default {DEFAULT_BOOTSTRAP})",
    )
    plot.add_argument("--title", default=None)
    plot.set_defaults(func=cmd_plot)

    crd = sub.add_parser("crd", help="print the CustomResourceDefinition YAML")
    crd.set_defaults(func=cmd_crd)
    policy = sub.add_parser(
        "admission-policy", help="print the ValidatingAdmissionPolicy that guards studies"
    )
    policy.add_argument("--helm", action="store_true", help="the chart's template instead")
    policy.set_defaults(func=cmd_admission_policy)

    from scalingstudy.cluster.command import add_operator_command
    from scalingstudy.cluster.get import add_get_command

    add_get_command(sub)
    add_operator_command(sub)
    return parser


def cmd_admission_policy(args: argparse.Namespace) -> int:
    from scalingstudy.admission import chart_template, policy_yaml

    sys.stdout.write(chart_template() if args.helm else policy_yaml())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (
        getattr(args, "confidence", 0.5) is not None
        and not 0 < getattr(args, "confidence", 0.5) < 1
    ):
        fail(f"--confidence must lie in (0, 1) (got {args.confidence})")
    if (getattr(args, "bootstrap", 0) or 0) < 0:
        fail(f"--bootstrap must be >= 0 (got {args.bootstrap})")
    if getattr(args, "workers", None) is not None and args.workers < 1:
        fail(f"--workers must be >= 1 (got {args.workers})")
    try:
        return int(args.func(args))
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
