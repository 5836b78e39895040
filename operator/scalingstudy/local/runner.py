"""``scalingstudy run``: the study's plan executed as local processes.

The loop is the operator's in miniature: observe (recorded results, running
processes), decide (``reconcile.decide``), act (start processes, record what
finished). Each result is on disk the moment its trial ends, so a run that is
interrupted in any way resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from scalingstudy.contract import (
    EXIT_CONFIG_ERROR,
    ResultError,
    parse_result,
    trial_environment,
)
from scalingstudy.fitting import FitError, fit_points
from scalingstudy.local import processes
from scalingstudy.local.store import ResultStore
from scalingstudy.plan import Trial, plan_trials
from scalingstudy.reconcile import decide
from scalingstudy.results import TrialRecord, fit_options, fittable, points_of
from scalingstudy.spec import ScalingStudy, spec_digest_fields

POLL_SECONDS = 0.05


@dataclass
class RunOutcome:
    records: dict[str, TrialRecord]
    planned: list[Trial]
    fit: dict[str, Any] | None
    fit_error: str | None
    failed_reason: str | None
    wall_seconds: float
    ran: int
    files: dict[str, Path] = field(default_factory=dict)


def _finish(running: processes.Running, metric: str) -> TrialRecord:
    """Turn an ended process into a record: its result file, or why it failed."""
    running.close()
    duration = time.monotonic() - running.started
    code = running.process.returncode
    if code == 0:
        try:
            text = running.result_file.read_text(encoding="utf-8")
            return TrialRecord.succeeded(running.trial, parse_result(text, metric), duration)
        except FileNotFoundError:
            return TrialRecord.failed(
                running.trial, "NoResult", "trainer exited 0 but wrote no result file", duration
            )
        except ResultError as exc:
            return TrialRecord.failed(running.trial, "BadResult", str(exc), duration)
    reason = (
        "ConfigurationError"
        if code == EXIT_CONFIG_ERROR
        else (f"Signal{-code}" if code < 0 else f"ExitCode{code}")
    )
    return TrialRecord.failed(running.trial, reason, processes.tail(running.stderr_path), duration)


def default_workers() -> int:
    return max(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        1,
    )


def run_study(
    study: ScalingStudy,
    out: Path,
    workers: int | None = None,
    progress: bool = True,
    on_record: Callable[[TrialRecord], None] | None = None,
) -> RunOutcome:
    started = time.monotonic()
    name = study.metadata.name
    spec = study.spec
    store = ResultStore(out)
    store.open(name, spec_digest_fields(spec))
    planned = plan_trials(name, spec)
    records = store.load()
    # A failure may be transient: a resumed run tries failed trials again, never succeeded ones.
    for rec in [r for r in records.values() if r.status == "Failed"]:
        store.forget(rec.trial)
        del records[rec.trial]
    workers = workers or default_workers()
    threads = str(max(default_workers() // workers, 1))
    command = processes.trainer_command(spec.trainer.command, spec.trainer.args)
    # The study's own variables; valueFrom needs a cluster (Secrets, fieldRefs) and is skipped.
    user_env = {e.name: e.value for e in spec.trainer.env if e.value is not None}
    planned_names = {t.name for t in planned}
    done_before = sum(1 for n in records if n in planned_names)

    running: dict[str, processes.Running] = {}
    ran = 0
    failed_reason: str | None = None
    bar = tqdm(
        total=len(planned),
        initial=done_before,
        disable=not progress,
        unit="trial",
        desc=name,
        dynamic_ncols=True,
    )
    try:
        while True:
            decision = decide(planned, records, running.keys(), workers, spec.max_failed_trials)
            if decision.failed:
                failed_reason = decision.failed_reason
                break
            if decision.finished:
                break
            for trial in decision.start:
                result_file = store.work_dir / f"{trial.name}.result.json"
                env = trial_environment(
                    name,
                    study.metadata.namespace or "",
                    trial,
                    spec,
                    result_file=str(result_file),
                    checkpoint_dir=str(store.work_dir / trial.name),
                )
                env = {**user_env, "OMP_NUM_THREADS": threads, **env}
                running[trial.name] = processes.start(
                    trial, command, env, result_file, store.logs_dir
                )
                ran += 1
            time.sleep(POLL_SECONDS)
            for trial_name in [n for n, r in running.items() if r.process.poll() is not None]:
                rec = _finish(running.pop(trial_name), spec.metric.name)
                store.record(rec)
                records[rec.trial] = rec
                bar.update(1)
                bar.set_postfix(failed=sum(r.status == "Failed" for r in records.values()))
                if on_record:
                    on_record(rec)
    finally:
        processes.stop_all(list(running.values()))
        bar.close()

    relevant = {n: r for n, r in records.items() if n in planned_names}
    outcome = RunOutcome(
        relevant, planned, None, None, failed_reason, time.monotonic() - started, ran
    )
    outcome.files["results"] = store.write_results_csv(relevant.values())
    if fittable(relevant.values()):
        try:
            outcome.fit = fit_points(points_of(relevant.values()), fit_options(spec))
        except FitError as exc:
            outcome.fit_error = str(exc)
    else:
        outcome.fit_error = "fewer than 3 data sizes have a succeeded trial"
    if outcome.fit is not None:
        outcome.files["fit"] = store.write_json("fit.json", outcome.fit)
        from scalingstudy.plot import plot_study

        outcome.files["plot"] = plot_study(
            points_of(relevant.values()), outcome.fit, out / "learning_curve.png", title=name
        )
    return outcome
