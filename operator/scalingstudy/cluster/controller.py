"""The operator's shell for one pass: gather a study's state, call the pure pass, write
the status, act. Decisions are made in `reconcile.py` (the pass), `status_builder.py`
(the status), `study_events.py` (Events), `collect.py` and `blocked.py`; `gather.py`
reads and `actions.py` writes the cluster. When passes run is `workers.py`'s business.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scalingstudy.admission import AdmissionRules, violations
from scalingstudy.cluster import blocked, spend
from scalingstudy.cluster.actions import Actor, Configured, now_rfc3339
from scalingstudy.cluster.backoff import Backoff
from scalingstudy.cluster.blocked import CreateBlock
from scalingstudy.cluster.collect import Collected
from scalingstudy.cluster.fitproc import request_of, run_fit
from scalingstudy.cluster.gather import Gatherer
from scalingstudy.cluster.kube import ApiError, Kube
from scalingstudy.cluster.manifests import JobSettings, StudyRef
from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.cluster.observe import JobState, with_earlier
from scalingstudy.cluster.prometheus import Prometheus
from scalingstudy.cluster.pruner import Pruner, PruneStep
from scalingstudy.cluster.pruning_pass import PRUNE_INTERVAL
from scalingstudy.cluster.reasons import ConditionReason, Event, Refusal, Stop
from scalingstudy.cluster.reconcile import (
    Pass,
    active_trials,
    decide,
    fit_due,
    fit_settings,
    merged,
    to_collect,
)
from scalingstudy.cluster.status_builder import (
    build_status,
    held_refusal,
    is_new_refusal,
    refused_status,
    within_limit,
)
from scalingstudy.cluster.study_events import design_events, status_events
from scalingstudy.cluster.workers import Key, Wake
from scalingstudy.contract import STATUS_BYTES_MAX
from scalingstudy.fitting import FitError, FitUnavailableError
from scalingstudy.planning.cost import trial_devices
from scalingstudy.planning.design import Design, design
from scalingstudy.planning.scheduling import lapsed_runs
from scalingstudy.records import with_current_names
from scalingstudy.results import fit_input, stage_fit
from scalingstudy.spec import ScalingStudySpec, SpecError, parse_spec
from scalingstudy.status import (
    Condition,
    FitStatus,
    ScalingStudyStatus,
    StageFit,
    TrialRecord,
)

log = logging.getLogger("scalingstudy.operator")


@dataclass(frozen=True)
class ControllerConfig:
    job: JobSettings = field(default_factory=JobSettings)
    resync_seconds: float = 30.0
    #: Events within this many seconds are one pass: at 1,000 instant trials 1 s keeps
    #: status writes at 0.13 a trial (0.5 s: 0.15-0.21), and a study reacts within it.
    batch_window: float = 1.0
    fit_interval: float = 10.0
    #: How long a finished trial without a termination message waits for Prometheus to
    #: scrape its pushed result before it is recorded as failed (a few scrape intervals).
    result_grace: float = 15.0
    #: How often Pushgateway groups nothing will read are looked for (of deleted studies;
    #: progress a pod pushed after its trial was recorded).
    sweep_seconds: float = 60.0
    #: How long a Job may have no pod before the study says its trials are blocked.
    blocked_after: float = 60.0
    #: What a study may ask of the cluster (the admission policy's rules, checked again).
    admission: AdmissionRules = field(default_factory=AdmissionRules)
    #: The largest status written; above it the study fails (etcd's request limit, 1.5
    #: MiB by default, less the object's spec and metadata).
    status_bytes_max: int = STATUS_BYTES_MAX
    #: How often a study with pruning on has its running trials' logs read and judged.
    prune_interval: float = PRUNE_INTERVAL


@dataclass(frozen=True)
class FitAttempt:
    """What became of a pass's fit: the new fit (None: none was made), the error of a fit
    that raised on its input, the note of one that ran to no answer (tried again), and
    when to come back."""

    fit: FitStatus | None = None
    error: str | None = None
    note: str | None = None
    wake_in: float | None = None


def _events(
    p: Pass, spec: ScalingStudySpec, before: ScalingStudyStatus, after: ScalingStudyStatus,
    fitted: bool, held: Condition,
) -> list[Event]:  # fmt: skip
    """The Events of a written pass: results, the fit, the phase, the design, a block."""
    events = status_events(p.new_records, before, after, fitted)
    events += design_events(before.design, after.design, spec.model_sizes.sizes()[-1])
    return events + [e for e in [blocked.became_blocked(before.conditions, held)] if e]


#: When to pass a study again whose status write was refused because it changed meanwhile.
CHANGED_RETRY_SECONDS = 1.0


def _notes(*notes: str | None) -> str | None:
    """What a study waits for, said in its Progressing condition (several: one line)."""
    said = [n for n in notes if n]
    return "; ".join(said) or None


def _sooner(*waits: float | None) -> float | None:
    return min((w for w in waits if w is not None), default=None)


class Controller:
    def __init__(
        self, kube: Kube, prometheus: Prometheus, metrics: OperatorMetrics, config: ControllerConfig
    ) -> None:
        self.kube, self.metrics, self.config = kube, metrics, config
        self.gather = Gatherer(kube, prometheus, metrics, config.result_grace,
                               config.blocked_after, bool(config.job.pushgateway_url))  # fmt: skip
        self.actor = Actor(kube, prometheus, metrics, config.job)
        self.pruner = Pruner(kube, prometheus, metrics, config.prune_interval)
        self.last_fit: dict[Key, float] = {}
        #: Fits that ran to no answer (timeout, crashed child): tried again, later.
        self.retries = Backoff()
        #: Why a study's fit is being tried again (said in its Progressing condition).
        self.fit_notes: dict[Key, str] = {}
        #: Trials whose Job name another owner holds: started after the others.
        self.taken: dict[Key, frozenset[str]] = {}
        #: What blocked a study's last creates (a name taken, a 403): its TrialsBlocked.
        self.create_blocks: dict[Key, CreateBlock] = {}
        #: A study's fit input that raised, and the error: not run again unchanged.
        self.failed_fits: dict[Key, tuple[str, str]] = {}
        #: The uid each study's memories above belong to.
        self.uids: dict[Key, str] = {}

    def forget(self, namespace: str, name: str) -> None:
        """The study is gone: drop what this process remembers of it."""
        self.last_fit.pop((namespace, name), None)
        self.metrics.forget_study(namespace, name)
        self.actor.forget(namespace, name)
        self.pruner.forget(namespace, name)
        self.retries.forget((namespace, name))
        self.fit_notes.pop((namespace, name), None)
        self.failed_fits.pop((namespace, name), None)
        self.create_blocks.pop((namespace, name), None)
        self.taken.pop((namespace, name), None)
        self.uids.pop((namespace, name), None)
        self.kube.forget_events(namespace, name)

    def _same_study(self, namespace: str, name: str, uid: str) -> None:
        """A study deleted and created again under its name while this process missed the
        deletion (it was down, or the watch lost it) is another study: it starts with
        nothing its predecessor left in memory (backoffs, blocks, fit notes, caches)."""
        known = self.uids.get((namespace, name))
        if known is not None and known != uid:
            log.info("%s/%s is a new study (uid %s, was %s)", namespace, name, uid, known)
            self.forget(namespace, name)
        self.uids[(namespace, name)] = uid

    def reconcile(self, namespace: str, name: str) -> Wake:  # one pass, in a thread
        obj = self.kube.get_study(namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return Wake(False)
        meta, raw = obj["metadata"], obj.get("status") or {}
        ref, generation = StudyRef(name, namespace, meta["uid"]), int(meta.get("generation", 0))
        self._same_study(namespace, name, ref.uid)
        version = str(meta.get("resourceVersion") or "")
        before = ScalingStudyStatus.lenient(raw)
        try:
            spec = parse_spec(obj.get("spec"))
        except SpecError as exc:
            stop = Stop(Refusal.INVALID_SPEC, str(exc))
            self._refuse(ref, generation, before, raw, stop, version)
            return Wake(True)
        # A refused study creates nothing but still records what its running Jobs finish.
        forbidden = violations(spec, namespace, self.config.admission)
        refusal = (Stop(Refusal.FORBIDDEN, "; ".join(forbidden)) if forbidden
                   else held_refusal(before, generation))  # fmt: skip
        recorded = with_current_names(name, before.results)  # older names: same trials
        jobs = self.gather.jobs(ref)
        # Runs already counted as cancelled are only deleted (again, after a crash or a
        # failed delete): never pruned or collected, so their time counts once.
        ledger, folded = spend.open_ledger(before.design, jobs)
        counted = {c.job_uid for c in ledger}
        live = [j for j in jobs if j.uid not in counted]
        pruned, found, found_events = self._finished(ref, spec, live, recorded)
        collected = [*pruned.records, *found.records]
        done = {r.trial for r in collected}  # with the time admitted before a preemption
        earlier = self.gather.admitted_before(ref, spec, [j for j in jobs if j.trial in done])
        collected = with_earlier(collected, jobs, earlier)
        spent = spend.Spent(ledger, folded)
        chosen, design_wake = self._design(ref, spec, before, recorded, collected, jobs, spent)
        taken = self.taken.get((namespace, name), frozenset())

        def decided(chosen: Design) -> Pass:
            return decide(chosen.plan, jobs, recorded, collected, parallelism=spec.parallelism,
                          max_failed=spec.max_failed_trials, fit=before.fit, more=chosen.more,
                          settings=fit_settings(spec), deferred=taken)  # fmt: skip

        p = decided(chosen)
        # Jobs this pass deletes before they end (the plan dropped their trials) spent
        # their time: the design is made again with it, so the budget sees it now.
        dropped = [j for j in jobs if j.name in p.delete and j.uid not in counted]
        admitted = self.gather.admitted_before(ref, spec, dropped)
        cancelled = spend.cancelled_runs(p.delete, jobs, counted, dt.datetime.now(dt.UTC), admitted)
        # A pruned trial trained again (its decision lapsed) leaves status: its pruned
        # run's time stays spent.
        lapsed = spend.lapsed_records(recorded, collected, p.records)
        relapsed = lapsed_runs(lapsed, {j.trial: j.uid for j in jobs if not j.deleting})
        # Those recorded Pruned by this very pass never reached the metrics.
        unmetered = [*cancelled, *(c for c in relapsed if c.trial not in recorded)]
        if cancelled or lapsed:
            recorded = {t: r for t, r in recorded.items() if t in p.records}
            collected = [r for r in collected if r.trial in p.records]
            spent = spend.Spent(*spend.bounded_ledger([*ledger, *cancelled, *relapsed], folded))
            fits = {f.data_size: f for f in chosen.status.stage_fits}
            chosen, design_wake = self._design(ref, spec, before, recorded, collected, jobs,
                                               spent, fits)  # fmt: skip
            p = decided(chosen)
        tried = self._maybe_fit((namespace, name), spec, p, fit_settings(spec))
        create_wait = self.retries.wait((namespace, name, "create"), time.monotonic())
        configured = (self.actor.configure(ref, spec)
                      if p.create and refusal is None and create_wait is None
                      else Configured(True))  # fmt: skip
        stuck = self.gather.blocked(ref, jobs)
        now = now_rfc3339()
        known_block = configured.refused or (self.create_blocks.get((namespace, name))
                                             if p.create else None)  # fmt: skip
        held = blocked.condition(stuck, before.conditions, generation, now, configured.conflict,
                                 known_block)  # fmt: skip
        built = build_status(p, generation, before, tried.fit or before.fit, tried.error, now,
                             [held], chosen.status, refusal,
                             _notes(tried.note, found.waiting_note()))  # fmt: skip
        after = within_limit(built, generation, now, self.config.status_bytes_max)
        # Results reach status before anything else happens: a crash after this line
        # loses nothing, and one before it only repeats the collection.
        version_after = self.actor.write_status(ref, raw, after, version)
        if version_after is None:  # the study changed, or is another one now: start over
            log.info("%s/%s changed during its pass; passing it again", namespace, name)
            return Wake(True, CHANGED_RETRY_SECONDS)
        self.metrics.record_cancelled(namespace, name, unmetered, trial_devices(spec))
        events = [*pruned.events, *found_events,
                  *_events(p, spec, before, after, tried.fit is not None, held)]  # fmt: skip
        if refusal is not None and is_new_refusal(before, generation, refusal):
            events.append(refusal.warning())
        self.metrics.trials_blocked.labels(namespace, name).set(len(stuck))
        # A status that says Failed (refused, too many failures, too large) starts nothing.
        ready = configured.ready and create_wait is None
        create = p.create if after.phase != "Failed" and ready else ()
        acted = self.actor.act(ref, spec, p, events, create,
                               [*pruned.delete, *spend.counted_jobs(jobs, counted)])  # fmt: skip
        # A name found taken is tried after the others until it is tried again.
        tried_now = {t.name for t in create}
        self.taken[(namespace, name)] = frozenset((taken - tried_now) | set(acted.taken))
        if acted.rejected is not None:
            self._refuse(ref, generation, after, after.to_json(), acted.rejected, version_after)
        if not p.create:  # nothing to create: nothing is blocked any more
            self.create_blocks.pop((namespace, name), None)
        block_wake = self._blocked((namespace, name), configured.refused or acted.blocked,
                                   bool(create or configured.refused), known_block)  # fmt: skip
        self.metrics.observe_study(namespace, name, after)
        # Events folded into a held one are written once their window has passed, even
        # when the study has nothing new to say.
        try:
            self.kube.flush_events(ref)
        except ApiError as exc:  # Events are a courtesy: a refused one costs no pass
            log.warning("%s/%s: Event not written: %s", namespace, name, exc)
        return Wake(True, _sooner(found.wake_in, tried.wake_in, design_wake, create_wait,
                                  block_wake, pruned.wake_in))  # fmt: skip

    def _finished(
        self, ref: StudyRef, spec: ScalingStudySpec, jobs: Sequence[JobState],
        recorded: dict[str, TrialRecord],
    ) -> tuple[PruneStep, Collected, list[Event]]:  # fmt: skip
        """The trials that ended since status was written: pruned ones first (a decision
        is on its Job before anything else: pruning_pass.py), then the finished Jobs'
        results, where a pruned trial's Job is never collected as a failure."""
        pruned = self.pruner.step(ref, spec, jobs, recorded)
        unpruned = {**recorded, **{r.trial: r for r in pruned.records}}
        found, events = self.gather.results(ref, spec, to_collect(jobs, unpruned))
        return pruned, found, events

    def _blocked(
        self, key: Key, block: CreateBlock | None, tried: bool, shown: CreateBlock | None
    ) -> float | None:
        """Remember what blocked the pass's creates (said in TrialsBlocked by the next
        pass, which comes at once when it differs from what status shows) and when to
        try creating again: a 403 or a name taken is retried with backoff, so a refusing
        API server is not asked every pass and the operator stays healthy."""
        if block is not None:
            self.create_blocks[key] = block
            if block.reason == ConditionReason.CREATE_REFUSED:  # a name taken costs a GET
                self.retries.failed((*key, "create"), time.monotonic())
            return CHANGED_RETRY_SECONDS if block != shown else None
        if tried:
            self.create_blocks.pop(key, None)
            self.retries.succeeded((*key, "create"))
            return CHANGED_RETRY_SECONDS if shown is not None else None
        return None

    def _design(
        self, ref: StudyRef, spec: ScalingStudySpec, before: ScalingStudyStatus,
        recorded: dict[str, TrialRecord], found: Sequence[TrialRecord], jobs: Sequence[JobState],
        spent: spend.Spent, known: Mapping[int, StageFit] | None = None,
    ) -> tuple[Design, float | None]:  # fmt: skip
        """The design's decision after the stage fits it asks for (kept in
        status.design, so each is made once; ``known``: those this pass has already),
        and when to come back for a fit that ran to no answer: the design then waits for
        it, as the local runner would."""
        records, _ = merged(recorded, found)
        active = active_trials(jobs, records)
        stored = before.design.stage_fits if before.design else []
        fits = dict(known) if known is not None else {f.data_size: f for f in stored}
        for _ in range(len(spec.data_sizes.sizes()) + 1):  # a bound, not a retry
            chosen = design(ref.name, spec, records, active, fits, spent.runs, spent.seconds)
            if chosen.fit_needed is None:
                break
            key = (ref.namespace, ref.name, chosen.fit_needed)
            wait = self.retries.wait(key, time.monotonic())
            if wait is not None:
                return chosen, wait
            try:
                fits[chosen.fit_needed] = stage_fit(chosen.prefix, spec, chosen.fit_needed,
                                                    run_fit)  # fmt: skip
            except FitUnavailableError as exc:
                wait = self.retries.failed(key, time.monotonic())
                log.warning("%s/%s: the stage fit through m=%d: %s; again in %.0f s",
                            ref.namespace, ref.name, chosen.fit_needed, exc, wait)  # fmt: skip
                return chosen, wait
            self.retries.succeeded(key)
        return chosen, None

    def _refuse(
        self, ref: StudyRef, generation: int, before: ScalingStudyStatus,
        raw: Mapping[str, Any], refusal: Stop, version: str,
    ) -> None:  # fmt: skip
        """A study that cannot run as it is: say so in status and a Warning Event once,
        keep every result (only onto the study as it was read: see `Actor.write_status`)."""
        invalid = refused_status(before, generation, refusal, now_rfc3339())
        if invalid is not None and self.actor.write_status(ref, raw, invalid, version) is not None:
            self.actor.refusal_event(ref, refusal)

    def _maybe_fit(self, key: Key, spec: ScalingStudySpec, p: Pass, settings: str) -> FitAttempt:
        """The fit of this pass, if one was due. A fit that ran to no answer is tried again
        with backoff and says so (``note``); one that raised is not run again on the same
        input (its answer would be the same), so its error stands until the results or the
        settings change."""
        due, wake_in = fit_due(p, time.monotonic() - self.last_fit.get(key, -1e9),
                               self.config.fit_interval)  # fmt: skip
        retry = self.retries.wait((*key, "fit"), time.monotonic())
        if retry is not None and due:
            return FitAttempt(wake_in=retry, note=self.fit_notes.get(key))
        if not due:
            return FitAttempt(wake_in=wake_in)
        points, options = fit_input(p.relevant(), spec)
        inputs = json.dumps(request_of(points, options), sort_keys=True)
        failed = self.failed_fits.get(key)
        if failed is not None and failed[0] == inputs:
            return FitAttempt(error=failed[1])
        started = time.monotonic()
        try:
            report = run_fit(points, options)
        except FitUnavailableError as exc:  # says nothing of the data: not a failed fit
            wait = self.retries.failed((*key, "fit"), time.monotonic())
            log.warning("%s/%s: %s; fitting again in %.0f s", *key, exc, wait)
            self.fit_notes[key] = f"the fit ran to no answer ({exc}); trying again in {wait:.0f} s"
            return FitAttempt(wake_in=wait, note=self.fit_notes[key])
        except FitError as exc:
            self.failed_fits[key] = (inputs, str(exc))
            return FitAttempt(error=str(exc))
        finally:
            self.last_fit[key] = time.monotonic()
            self.metrics.fit_seconds.observe(self.last_fit[key] - started)
        self.retries.succeeded((*key, "fit"))
        self.fit_notes.pop(key, None)
        self.failed_fits.pop(key, None)
        fit = FitStatus.of(report, final=p.final, based_on_results=p.succeeded, settings=settings)
        return FitAttempt(fit=fit)
