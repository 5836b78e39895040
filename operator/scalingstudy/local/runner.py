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

from tqdm import tqdm

from scalingstudy.contract import (
    REASON_BAD_RESULT,
    ResultError,
    exit_reason,
    parse_result,
)
from scalingstudy.fitting import fit_points
from scalingstudy.fitting.report import FitReport
from scalingstudy.local import processes
from scalingstudy.local.store import ResultStore
from scalingstudy.local.warm import WarmStarter
from scalingstudy.planning.design import Design, design
from scalingstudy.planning.dry_run import describe
from scalingstudy.planning.plan import Plan, Trial, plan_trials
from scalingstudy.planning.scheduling import schedule
from scalingstudy.records import with_current_names
from scalingstudy.render.output import write_study_output
from scalingstudy.results import stage_fit
from scalingstudy.spec import ScalingStudy, ScalingStudySpec, spec_digest_fields
from scalingstudy.status import DesignStatus, StageFit, TrialRecord
from scalingstudy.trial_env import trial_environment

POLL_SECONDS = 0.05


@dataclass
class LocalRun:
    records: dict[str, TrialRecord]
    planned: Plan
    fit: FitReport | None
    fit_error: str | None
    failed_reason: str | None
    wall_seconds: float
    ran: int
    design: DesignStatus | None = None
    files: dict[str, Path] = field(default_factory=dict)


def _finish(running: processes.Running, metric: str) -> TrialRecord:
    """Turn an ended process into a record: its result file, or why it failed."""
    running.close()
    duration = time.monotonic() - running.started
    code = running.process.wait()
    if code == 0:
        try:
            text = running.result_file.read_text(encoding="utf-8")
            return TrialRecord.succeeded(running.trial, parse_result(text, metric), duration)
        except FileNotFoundError:
            return TrialRecord.failed(
                running.trial, REASON_BAD_RESULT, "trainer exited 0 but wrote no result file",
                duration,
            )  # fmt: skip
        except ResultError as exc:
            return TrialRecord.failed(running.trial, REASON_BAD_RESULT, str(exc), duration)
    return TrialRecord.failed(
        running.trial, exit_reason(code), processes.tail(running.stderr_path), duration
    )


def default_workers() -> int:
    return max(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        1,
    )


def _resumable(store: ResultStore, study: str) -> dict[str, TrialRecord]:
    """The records on disk, under the names their values give today; a failure may be
    transient, so a resumed run tries failed trials again, never succeeded ones."""
    records = store.load()
    for rec in [r for r in records.values() if r.status == "Failed"]:
        store.forget(rec.trial)
        del records[rec.trial]
    return with_current_names(study, records.values())


class TrialLauncher:
    """How to start one trial: the trainer command in the contract's environment, forked
    from a warm process for the built-in trainer where that works (``local.warm``),
    which starts with the first trial and ends with ``close`` (unless the caller gave one:
    it then closes it)."""

    def __init__(
        self,
        study: ScalingStudy,
        store: ResultStore,
        workers: int,
        warm: bool,
        starter: WarmStarter | None = None,
    ) -> None:
        spec = study.spec
        self.study, self.store = study, store
        self.threads = str(max(default_workers() // workers, 1))
        self.command = processes.trainer_command(spec.trainer.command, spec.trainer.args)
        # The study's own variables; valueFrom needs a cluster (Secrets, fieldRefs): skipped.
        self.user_env = {e.name: e.value for e in spec.trainer.env if e.value is not None}
        self.warm = warm
        self.starter, self.owned = starter, starter is None

    def __call__(self, trial: Trial) -> processes.Running:
        result_file = self.store.work_dir / f"{trial.name}.result.json"
        env = trial_environment(
            self.study.metadata.name,
            self.study.metadata.namespace or "",
            trial,
            self.study.spec,
            result_file=str(result_file),
            checkpoint_dir=str(self.store.work_dir / trial.name),
        )
        env = {**self.user_env, "OMP_NUM_THREADS": self.threads, **env}
        if self.warm and self.starter is None:  # asked once, at the first trial
            log = self.store.logs_dir / "warm-start.log"
            self.starter, self.warm = processes.warm_starter_for(self.command, log), False
        return processes.start(trial, self.command, env, result_file, self.store.logs_dir,
                               self.starter)  # fmt: skip

    def close(self) -> None:
        if self.starter is not None and self.owned:
            self.starter.close()


def _conclude(outcome: LocalRun, spec: ScalingStudySpec, store: ResultStore, title: str) -> None:
    written = write_study_output(store.root, title, spec, list(outcome.records.values()),
                                 outcome.design, f"local run in {store.root}")  # fmt: skip
    outcome.fit, outcome.fit_error, outcome.files = written.fit, written.fit_error, written.files


def plan_study(study: ScalingStudy, out: Path, workers: int | None = None) -> list[str]:
    """The dry run of ``run_study`` on ``out`` (``scalingstudy plan``, ``run --dry-run``):
    the same refusal (StoreError: a different setup, naming the changed fields) and the
    same records it would resume from; reads only."""
    store = ResultStore(out)
    store.check(study.metadata.name, spec_digest_fields(study.spec))
    records = with_current_names(study.metadata.name, store.load(set_aside=False).values())
    return describe(study, records, workers or default_workers())


def run_study(
    study: ScalingStudy,
    out: Path,
    workers: int | None = None,
    progress: bool = True,
    on_record: Callable[[TrialRecord], None] | None = None,
    warm_start: bool = True,
    starter: WarmStarter | None = None,
) -> LocalRun:
    """Run (or resume) the study in ``out``; ``warm_start=False`` starts every trial as a
    fresh process (``scalingstudy run --cold-start``), ``starter`` is a warm process to
    fork them from (the CLI's, which ran the preflight check). A second run on the same
    ``out`` while this one lives is refused (StoreError): both would train the same
    trials and replace each other's result files."""
    started = time.monotonic()
    name, spec = study.metadata.name, study.spec
    store = ResultStore(out)
    with store.lock():
        store.open(name, spec_digest_fields(spec))
        records = _resumable(store, name)
        launch = TrialLauncher(study, store, workers or default_workers(), warm_start, starter)
        try:
            loop = _Loop(name, spec, store, records, workers or default_workers(), on_record)
            chosen = loop.run(launch, progress)
        finally:
            launch.close()
        outcome = LocalRun(
            chosen.plan.relevant(records),
            chosen.plan,
            None,
            None,
            loop.failed_reason,
            time.monotonic() - started,
            loop.ran,
            chosen.status,
        )
        _conclude(outcome, spec, store, name)
    return outcome


@dataclass
class _Loop:
    """The observe-decide-act loop of one run over its records (updated in place)."""

    name: str
    spec: ScalingStudySpec
    store: ResultStore
    records: dict[str, TrialRecord]
    workers: int
    on_record: Callable[[TrialRecord], None] | None
    running: dict[str, processes.Running] = field(default_factory=dict)
    fits: dict[int, StageFit] = field(default_factory=dict)
    ran: int = 0
    failed_reason: str | None = None

    def run(self, launch: TrialLauncher, progress: bool) -> Design:
        """Until the design is finished or the study failed: the last decision."""
        spec, running = self.spec, self.running
        bar = tqdm(total=len(plan_trials(self.name, spec)), initial=len(self.records),
                   disable=not progress, unit="trial", desc=self.name,
                   dynamic_ncols=True)  # fmt: skip
        try:
            while True:
                chosen = design(self.name, spec, self.records, running.keys(), self.fits)
                if chosen.fit_needed is not None:
                    self.fits[chosen.fit_needed] = stage_fit(
                        chosen.prefix, spec, chosen.fit_needed, fit_points
                    )
                    continue
                plan = chosen.plan
                # A stopped adaptive study no longer plans the next stage's trials: cancel.
                processes.stop_all([running.pop(n) for n in [n for n in running if n not in plan]])
                decision = schedule(plan, self.records, running.keys(), self.workers,
                                    spec.max_failed_trials)  # fmt: skip
                if decision.failed or (decision.finished and not chosen.more):
                    self.failed_reason = decision.failed_reason
                    return chosen
                for trial in decision.start:
                    running[trial.name] = launch(trial)
                    self.ran += 1
                time.sleep(POLL_SECONDS)
                self._collect(bar, len(plan))
        finally:
            processes.stop_all(list(running.values()))
            bar.close()

    def _collect(self, bar: tqdm, planned: int) -> None:
        """Record every trial that ended since the last look."""
        for trial_name in [n for n, r in self.running.items() if r.process.poll() is not None]:
            rec = _finish(self.running.pop(trial_name), self.spec.metric.name)
            self.store.record(rec)
            self.records[rec.trial] = rec
            bar.total = max(bar.total, planned)
            bar.update(1)
            bar.set_postfix(failed=sum(r.status == "Failed" for r in self.records.values()))
            if self.on_record:
                self.on_record(rec)
