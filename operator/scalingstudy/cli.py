"""The ``scalingstudy`` command. Bad input exits 2 with one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from scalingstudy.cli_fit import add_fit_commands
from scalingstudy.usage import EXIT_BAD_INPUT, fail

if TYPE_CHECKING:
    from scalingstudy.local.runner import LocalRun
    from scalingstudy.local.warm import WarmStarter


def cmd_crd(args: argparse.Namespace) -> int:
    from scalingstudy.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _task_problem(message: str, file: str | None) -> str:
    """The trainer's task-option error, prefixed ``file:line:`` of the option it names
    (``task NAME: options.KEY: ...``) where the study file has it."""
    import re

    from scalingstudy.spec.problems import line_of

    found = re.match(r"task [^:]+: options\.([\w.]+):", message)
    if file is None or found is None:
        return f"spec.task: {message}"
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return f"spec.task: {message}"
    keys = tuple(int(k) if k.isdigit() else k for k in found.group(1).split("."))
    line = line_of(text, ("spec", "task", "options", *keys))
    return f"{file}:{line}: spec.task: {message}" if line else f"{file}: spec.task: {message}"


def _preflight(study: Any, starter: WarmStarter | None = None, file: str | None = None) -> None:
    """Catch a wrong task name or option, a missing corpus or one too small for the
    largest subset once, before every trial fails with it: the built-in trainer checks
    the largest trial's environment (`scalingstudy-trainer --check`, forked from the warm
    process when there is one), so this process never loads torch or the data. A study's
    own command: its program and the script or module it runs must exist."""
    from scalingstudy.contract import EXIT_CONFIG_ERROR
    from scalingstudy.local.processes import command_problem, trainer_command
    from scalingstudy.planning.plan import plan_trials
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
        fail(_task_problem(stderr.strip().splitlines()[-1], file))
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
        _preflight(study, file=args.study)
        return _dry_run(study, out, args.workers)
    from scalingstudy.local.store import ResultStore

    if busy := ResultStore(out).in_use():  # refused before the slow preflight check
        fail(busy)
    starter = _warm_starter(study, args)
    try:
        _preflight(study, starter, args.study)
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
    return _report_run(study.metadata.name, outcome)


def _report_run(name: str, outcome: LocalRun) -> int:
    """What `run` prints when it ends (the trials, the failures, the fit and the files),
    and its exit status: 1 when the study failed or has no fit."""
    from scalingstudy.render.output import StudyOutput, print_summary

    succeeded = sum(r.status == "Succeeded" for r in outcome.records.values())
    failed = sum(r.status == "Failed" for r in outcome.records.values())
    pruned = sum(r.status == "Pruned" for r in outcome.records.values())
    print(
        f"Study {name}: {succeeded}/{len(outcome.planned)} trials succeeded, "
        f"{failed} failed"
        + (f", {pruned} pruned" if pruned else "")
        + f"; {outcome.ran} run now, {outcome.wall_seconds:.1f} s"
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
    run.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")
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
    plan.add_argument(
        "--out",
        help="a run's output directory: plan from its results (default: scalingstudy-NAME)",
    )
    plan.add_argument(
        "--workers", type=int, default=None, help="trials at once (default: CPU count)"
    )
    plan.set_defaults(func=cmd_plan)

    add_fit_commands(sub)

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
