"""``scalingstudy run``: the study's plan executed as local processes.

The loop is the operator's in miniature: observe (recorded results, running
processes), decide (``reconcile.decide``), act (start processes, record what
finished). Each result is on disk the moment its trial ends, so a run that is
interrupted in any way resumes where it stopped.
"""

from __future__ import annotations

import math
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from scalingstudy.curve_rows import compact_curve
from scalingstudy.fitting import fit_points
from scalingstudy.fitting.report import FitReport
from scalingstudy.local import processes
from scalingstudy.local.curve_logs import LogFollower, read_log_curve
from scalingstudy.local.live_curves import best_so_far, competitors, pruning_settings
from scalingstudy.local.store import ResultStore
from scalingstudy.local.trial_end import ended
from scalingstudy.local.warm import WarmStarter
from scalingstudy.planning.design import Design, design
from scalingstudy.planning.dry_run import describe
from scalingstudy.planning.plan import Plan, Trial, plan_trials
from scalingstudy.planning.scheduling import lapsed_prunes, lapsed_runs, schedule
from scalingstudy.records import with_current_names
from scalingstudy.render.output import write_study_output
from scalingstudy.results import stage_fit
from scalingstudy.spec import ScalingStudy, ScalingStudySpec, spec_digest_fields
from scalingstudy.status import CancelledRun, DesignStatus, StageFit, TrialRecord
from scalingstudy.trial_env import trial_environment
from scalingstudy_sdk.curve import Curve

if TYPE_CHECKING:
    from scalingstudy.pruning import Prune

POLL_SECONDS = 0.05
#: How often the running trials' logs are looked at (live curves, best so far, pruning).
LOOK_SECONDS = 1.0
#: A pruned trial still running this long after its SIGTERM gets SIGKILL.
PRUNED_KILL_SECONDS = 30.0


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


def _conclude(
    outcome: LocalRun, spec: ScalingStudySpec, store: ResultStore, title: str,
    curves: Mapping[str, Curve],
) -> None:  # fmt: skip
    written = write_study_output(store.root, title, spec, list(outcome.records.values()),
                                 outcome.design, f"local run in {store.root}",
                                 curves=curves)  # fmt: skip
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
            loop = _Loop(name, spec, store, records, workers or default_workers(), on_record,
                         cancelled_seconds=store.cancelled_before())  # fmt: skip
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
        _conclude(outcome, spec, store, name, loop.finished_curves(outcome.records.values()))
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
    followers: dict[str, LogFollower] = field(default_factory=dict)
    """The running trials' logs, each read from where the last look stopped."""
    live: dict[str, Curve] = field(default_factory=dict)
    """The running trials' curves at the last look."""
    curves: dict[str, Curve] = field(default_factory=dict)
    """Finished trials' curves (this run's, and earlier runs' read once from their logs)."""
    pruned: dict[str, Prune] = field(default_factory=dict)
    """Trials stopped by pruning, not yet ended: each is signalled once."""
    pruned_since: dict[str, float] = field(default_factory=dict)
    """When each pruned trial was sent SIGTERM."""
    last_look: float = -math.inf
    cancelled: list[CancelledRun] = field(default_factory=list)
    """Trials this run stopped because the design no longer plans them: spent all the same."""
    cancelled_seconds: float = 0.0
    """The seconds of the runs earlier runs on this folder cancelled (their design.json)."""

    def run(self, launch: TrialLauncher, progress: bool) -> Design:
        """Until the design is finished or the study failed: the last decision."""
        spec, running = self.spec, self.running
        bar = tqdm(total=len(plan_trials(self.name, spec)), initial=len(self.records),
                   disable=not progress, unit="trial", desc=self.name,
                   dynamic_ncols=True)  # fmt: skip
        try:
            while True:
                chosen = design(self.name, spec, self.records, running.keys(), self.fits,
                                self.cancelled, self.cancelled_seconds)  # fmt: skip
                if chosen.fit_needed is not None:
                    self.fits[chosen.fit_needed] = stage_fit(
                        chosen.prefix, spec, chosen.fit_needed, fit_points
                    )
                    continue
                plan = chosen.plan
                if self._retrain_lapsed(plan):
                    continue
                # A stopped adaptive study no longer plans the next stage's trials: cancel.
                stopped = [running.pop(n) for n in list(running) if n not in plan]
                processes.stop_all(stopped)
                for r in stopped:  # their time is spent: decided again with it
                    self.followers.pop(r.trial.name, None)
                    used = round(time.monotonic() - r.started, 3)
                    key = f"local-{uuid.uuid4()}"
                    self.cancelled.append(
                        CancelledRun(trial=r.trial.name, job_uid=key, seconds=used)
                    )
                if stopped:
                    continue
                decision = schedule(plan, self.records, running.keys(), self.workers,
                                    spec.max_failed_trials)  # fmt: skip
                if decision.failed or (decision.finished and not chosen.more):
                    self.failed_reason = decision.failed_reason
                    return chosen
                for trial in decision.start:
                    running[trial.name] = launch(trial)
                    self.followers[trial.name] = LogFollower(self._log(trial.name))
                    self.ran += 1
                time.sleep(POLL_SECONDS)
                self._collect(bar, len(plan))
                if time.monotonic() - self.last_look >= LOOK_SECONDS:
                    self._look(bar, plan)
        finally:
            processes.stop_all(list(running.values()))
            bar.close()

    def _log(self, trial: str) -> Path:
        return self.store.logs_dir / f"{trial}.log"

    def _collect(self, bar: tqdm, planned: int) -> None:
        """Record every trial that ended since the last look."""
        for trial_name in [n for n, r in self.running.items() if r.process.poll() is not None]:
            follower = self.followers.pop(trial_name, None)
            curve = follower.finish() if follower else read_log_curve(self._log(trial_name))
            self.live.pop(trial_name, None)
            if curve is not None:
                self.curves[trial_name] = curve
            rec = ended(self.running.pop(trial_name), self.spec.metric.name,
                          self.pruned.pop(trial_name, None), curve)  # fmt: skip
            self.pruned_since.pop(trial_name, None)
            self.store.record(rec)
            self.records[rec.trial] = rec
            bar.total = max(bar.total, planned)
            bar.update(1)
            self._postfix(bar)
            if self.on_record:
                self.on_record(rec)

    def _look(self, bar: tqdm, plan: Plan) -> None:
        """About once per second: the running trials' logs read on from where they were,
        the progress line's best so far, and pruning."""
        self.last_look = time.monotonic()
        self.live = {n: f.poll() for n, f in self.followers.items()}
        self._postfix(bar)
        self._prune(plan)
        self._kill_pruned_stragglers()

    def _postfix(self, bar: tqdm) -> None:
        best = best_so_far(self.records.values(), self.live, self.spec.metric.name)
        failed = sum(r.status == "Failed" for r in self.records.values())
        bar.set_postfix(failed=failed, **({} if best is None else {"best": f"{best:.4g}"}))

    def _prune(self, plan: Plan) -> None:
        """Stop the running trials that pruning says cannot win (each signalled once;
        recorded as Pruned when it ends). Nothing without ``design.pruning.enabled``."""
        settings = pruning_settings(self.spec)
        if settings is None:
            return
        from scalingstudy.pruning import decide
        from scalingstudy.pruning.decision import judged_seeds

        finished = list(plan.relevant(self.records).values())
        # A pruned trial on its way out is no one's rival any more.
        running = {n: r.trial for n, r in self.running.items() if n not in self.pruned}
        table = competitors(finished, self.finished_curves(finished), running, self.live)
        # The built-in trainer reports its lowest evaluation: its best so far bounds its final.
        lowest = not self.spec.trainer.command
        seeds, swept = judged_seeds(self.spec)
        for prune in decide(table, settings, final_is_lowest=lowest, seeds=seeds,
                            rates_swept=swept):  # fmt: skip
            if prune.trial in self.running and prune.trial not in self.pruned:
                self._stop_pruned(prune)

    def _stop_pruned(self, prune: Prune) -> None:
        """Record the trial as Pruned first (a runner that dies before the trial ends must
        not train it again: a resumed run keeps the record), then SIGTERM its group. Its
        record is written again when it ends, with its full duration (or its result, if
        it finished before the signal landed)."""
        running = self.running[prune.trial]
        if running.process.poll() is not None:
            return  # it ended first: its own outcome is recorded as it is
        ran = time.monotonic() - running.started
        curve = self.live.get(prune.trial, Curve())
        against = prune.against
        self.store.record(TrialRecord.pruned(running.trial, prune.step, prune.message, curve,
                                             ran, against))  # fmt: skip
        self.pruned[prune.trial] = prune
        self.pruned_since[prune.trial] = time.monotonic()
        running.signalled = True
        processes.signal_trial(running, signal.SIGTERM)

    def _retrain_lapsed(self, plan: Plan) -> bool:
        """Forget the Pruned records whose decision no longer stands (its rival failed or
        left the plan: `lapsed_prunes`), so the trial is trained again; whether any."""
        lapsed = [n for n in lapsed_prunes(plan, self.records) if n not in self.running]
        self.cancelled += lapsed_runs([self.records[n] for n in lapsed])  # still spent
        for name in lapsed:
            self.store.forget(name)
            self.records.pop(name)
            self.curves.pop(name, None)
        return bool(lapsed)

    def _kill_pruned_stragglers(self) -> None:
        """SIGKILL a pruned trial still running ``PRUNED_KILL_SECONDS`` after its SIGTERM
        (a checkpoint saved on the way out is never resumed: it has no use)."""
        now = time.monotonic()
        for name, since in self.pruned_since.items():
            if name in self.running and now - since >= PRUNED_KILL_SECONDS:
                processes.signal_trial(self.running[name], signal.SIGKILL)

    def finished_curves(self, records: Iterable[TrialRecord]) -> dict[str, Curve]:
        """The curves of finished trials: this run's, else read once from their logs (an
        earlier run's trial in the same folder), else a pruned record's compact curve."""
        out: dict[str, Curve] = {}
        for r in records:
            if r.trial not in self.curves:
                curve = read_log_curve(self._log(r.trial)) or compact_curve(r)
                self.curves[r.trial] = curve or Curve()
            if self.curves[r.trial].points:
                out[r.trial] = self.curves[r.trial]
        return out
