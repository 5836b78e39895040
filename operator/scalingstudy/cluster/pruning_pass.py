"""Pruning on a cluster, decided without I/O: who competes, what a decision writes on the
trial's Job, which Jobs carry one, and whether pushed progress agrees with the log.

Restart safety. A decision is first written on the trial's Job as an annotation (durable:
it lives as long as the Job), then recorded in status (a Pruned record), then the Job is
deleted. Every pass records each annotated Job that status does not hold yet and deletes
each annotated Job that status does hold, so a restart at any point between these steps
records the trial once, never retries it, and never prunes it twice; the annotation
carries the compact curve, so no curve is lost when the pod goes before status is written.

A trial that finished by itself wins over a decision. The Jobs a pass judges were listed
before the logs were read (seconds, at times), so a trial may have finished meanwhile: the
Job the annotation's PATCH answers (fresh) and the pass's pods say so (`completed`), and
such a trial is not recorded Pruned, now or by a later pass (`to_record` skips a Job that
succeeded, or whose pod 0 exited 0): its result is collected as any finished Job's is,
as the local runner records a trial that finished before its SIGTERM as Succeeded. A Job
being deleted is never recorded from its annotation: it is deleted only once status held
its record, so a trial whose record was dropped since (its decision lapsed: the rival it
could not beat failed or is no longer planned) is not pruned again by its old Job.

Forgery. A decision rests only on curves read from each trial's own pod log. What the
Pushgateway holds (anyone who can reach it may push) is compared with the log at the same
step: a disagreement is counted, as a result that disagrees with its termination message
is (`collect.Mismatch`), and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalingstudy.cluster.manifests import COMPLETION_INDEX, Obj
from scalingstudy.cluster.observe import PRUNED_ANNOTATION as PRUNED_ANNOTATION
from scalingstudy.cluster.observe import JobState, controlled_by, job_state, pod_outcome
from scalingstudy.pruning.decision import Competitor, Prune, judged_seeds
from scalingstudy.records import TrialRecord, compact_curve
from scalingstudy.results import planned_trial
from scalingstudy.spec import ScalingStudySpec
from scalingstudy_sdk.curve import Curve, CurvePoint

#: At most this often (seconds) a study's running trials' logs are read and judged.
PRUNE_INTERVAL = 10.0


@dataclass(frozen=True)
class PruneMark:
    """A pruning decision as its Job carries it: where the trial stopped, why, how long
    it had run, its compact curve ([step, validation loss] pairs), and the competitor it
    could not beat (so a restart before status is written keeps what makes the decision
    lapse: `scheduling.lapsed_prunes`)."""

    step: int
    message: str
    seconds: float | None
    curve: tuple[tuple[float, float], ...]
    against: str | None = None

    def to_annotation(self) -> str:
        body: dict[str, Any] = {"step": self.step, "message": self.message,
                                "seconds": self.seconds,
                                "curve": [list(p) for p in self.curve]}  # fmt: skip
        if self.against is not None:
            body["against"] = self.against
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, text: str) -> PruneMark:
        """The mark as written; an unreadable one is still a decision (the Job was pruned)
        and is recorded as such, with no curve."""
        try:
            raw: Any = json.loads(text)
            curve = tuple((float(s), float(v)) for s, v in raw.get("curve") or [])
            seconds, against = raw.get("seconds"), raw.get("against")
            return cls(int(raw["step"]), str(raw.get("message") or "pruned"),
                       None if seconds is None else float(seconds), curve,
                       None if against is None else str(against))  # fmt: skip
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls(0, "pruned (the Job's prune annotation could not be read)", None, ())

    def as_curve(self) -> Curve:
        return Curve(tuple(CurvePoint(step=int(s), validation_loss=v) for s, v in self.curve))


def mark_of(prune: Prune, curve: Curve, seconds: float | None) -> PruneMark:
    """The mark of a decision, with the rival it lost to (`Prune.against`)."""
    pairs = tuple((float(s), float(v)) for s, v in compact_curve(curve))
    return PruneMark(prune.step, prune.message, seconds, pairs, prune.against)


def pruned_record(job: JobState, mark: PruneMark) -> TrialRecord | None:
    """The Pruned record of an annotated Job (None: not one of the study's trials)."""
    trial = job.as_trial
    if trial is None:
        return None
    return TrialRecord.pruned(trial, mark.step, mark.message, mark.as_curve(), mark.seconds,
                              against=mark.against)  # fmt: skip


def marked(jobs: Iterable[JobState]) -> dict[str, PruneMark]:
    """The decisions the study's Jobs carry, by trial."""
    return {j.trial: PruneMark.from_annotation(j.pruned) for j in jobs if j.pruned is not None}


def pod_zero_succeeded(job_uid: str, pods: Iterable[Obj]) -> bool:
    """Whether pod 0 (rank 0: its result is the trial's) of the Job of that uid has
    terminated with exit code 0: the trial finished, whatever the Job says yet."""
    for pod in pods:
        index = (pod.get("metadata", {}).get("annotations") or {}).get(COMPLETION_INDEX)
        if index not in (None, "0") or not controlled_by(pod, job_uid):
            continue
        outcome = pod_outcome(pod)
        if outcome is not None and outcome.exit_code == 0:
            return True
    return False


def completed(job: Obj, pods: Iterable[Obj]) -> bool:
    """Whether a Job (as an API answer has it: the annotation's PATCH answers the Job as it
    is now) finished by itself: Complete, a pod succeeded, or its pod 0 exited 0."""
    state = job_state(job)
    succeeded = (job.get("status") or {}).get("succeeded") or 0
    return state.phase == "succeeded" or succeeded > 0 or pod_zero_succeeded(state.uid, pods)


def ended_by_itself(
    jobs: Sequence[JobState], recorded: Mapping[str, TrialRecord],
    pods: Mapping[str, Sequence[Obj]],
) -> set[str]:  # fmt: skip
    """Annotated Jobs not recorded yet whose pod 0 exited 0 (the Job may not say Complete
    yet): trials that finished before the decision reached them (pods by trial)."""
    return {
        j.trial
        for j in jobs
        if j.pruned is not None and j.trial not in recorded and j.phase != "succeeded"
        and pod_zero_succeeded(j.uid, pods.get(j.trial, ()))
    }  # fmt: skip


def unsettled(jobs: Sequence[JobState], recorded: Mapping[str, TrialRecord]) -> bool:
    """Whether an annotated Job awaits its record (the pass then lists pods: the trial may
    have finished by itself, `ended_by_itself`)."""
    return any(
        j.pruned is not None and j.trial not in recorded and j.phase != "succeeded"
        and not j.deleting
        for j in jobs
    )  # fmt: skip


def to_record(
    jobs: Sequence[JobState], recorded: Mapping[str, TrialRecord],
    finished: Collection[str] = (),
) -> list[TrialRecord]:  # fmt: skip
    """Pruned records of the annotated Jobs that status does not hold yet, except a Job
    that succeeded or being deleted, and the trials in ``finished`` (`ended_by_itself`):
    see the module's doc."""
    marks = marked(jobs)
    out = []
    for job in jobs:
        if job.phase == "succeeded" or job.deleting or job.trial in finished:
            continue
        if job.trial in marks and job.trial not in recorded:
            record = pruned_record(job, marks[job.trial])
            if record is not None:
                out.append(record)
    return out


def to_delete(jobs: Sequence[JobState], recorded: Mapping[str, TrialRecord]) -> list[str]:
    """Annotated Jobs whose trial status records as Pruned, not being deleted yet."""
    return sorted(
        j.name
        for j in jobs
        if j.pruned is not None
        and not j.deleting
        and (r := recorded.get(j.trial)) is not None
        and r.status == "Pruned"
    )


def running(jobs: Sequence[JobState], recorded: Mapping[str, TrialRecord]) -> list[JobState]:
    """Trials pruning may judge: running, not recorded, not already pruned."""
    return [
        j
        for j in jobs
        if j.phase == "active" and not j.deleting and j.pruned is None and j.trial not in recorded
        and j.as_trial is not None
    ]  # fmt: skip


def competitors(
    live: Sequence[JobState], records: Mapping[str, TrialRecord], curves: Mapping[str, Curve]
) -> list[Competitor]:
    """Everyone a running trial may compete with: the running trials (their curves so
    far) and the finished ones: with a result, their recorded loss and their curve when
    it could be read; failed or pruned, no final (they bound no one, and a seed of an arm
    that has none keeps the arm from being judged: the runner's `competitors` too)."""
    out = []
    running = set()
    for job in live:
        t = job.as_trial
        assert t is not None  # `running` keeps only trials
        running.add(t.name)
        out.append(Competitor(t.name, t.data_size, t.model_size, t.seed, t.learning_rate,
                              curves.get(t.name, Curve()), None, True))  # fmt: skip
    for r in records.values():
        if r.trial in running:
            continue
        ok = r.status == "Succeeded" and r.loss is not None
        read = curves.get(r.trial) if ok else None
        curve = read if read is not None and read.points else _record_curve(r) if ok else Curve()
        out.append(Competitor(r.trial, r.data_size, r.model_size, r.seed, r.learning_rate,
                              curve, r.loss if ok else None, False))  # fmt: skip
    return out


def _record_curve(record: TrialRecord) -> Curve:
    """The compact curve a record keeps, if any (a curve read from a log is preferred)."""
    pairs = record.curve or []
    return Curve(tuple(CurvePoint(step=int(s), validation_loss=v) for s, v in pairs))


#: Finished trials' curves a study's pruning keeps (read once each; thinned curves).
FINISHED_CURVES_MAX = 2000


def to_read_once(
    jobs: Sequence[JobState], recorded: Mapping[str, TrialRecord], cached: Collection[str]
) -> list[JobState]:
    """The finished trials whose log is read, once: those recorded Succeeded (the rule
    calibrates its forecasts on their curves and recorded finals), by Job uid, not read
    yet. A trial that failed or was pruned competes with no one and calibrates nothing
    (a pruned one's curve is in its record), so its log is never read."""
    return [
        j
        for j in jobs
        if j.uid and j.uid not in cached
        and (r := recorded.get(j.trial)) is not None and r.status == "Succeeded"
    ]  # fmt: skip


def kept_curves(
    cache: Mapping[str, tuple[str, Curve]], recorded: Mapping[str, TrialRecord],
    limit: int = FINISHED_CURVES_MAX,
) -> dict[str, tuple[str, Curve]]:  # fmt: skip
    """The cache (Job uid -> (trial, curve)) less the trials no longer recorded Succeeded
    (a spec edit, a study re-run), the oldest first out beyond ``limit``: bounded."""
    kept = [(uid, v) for uid, v in cache.items()
            if (r := recorded.get(v[0])) is not None and r.status == "Succeeded"]  # fmt: skip
    return dict(kept[-limit:] if limit > 0 else [])


def judge(
    study: str, spec: ScalingStudySpec, live: Sequence[JobState],
    records: Mapping[str, TrialRecord], curves: Mapping[str, Curve],
) -> list[Prune]:  # fmt: skip
    """The running trials to stop, by the study's pruning settings, exactly as the local
    runner asks: the built-in trainer (no custom command) reports its lowest evaluation,
    so its best so far bounds its final; every planned seed of an arm must have started
    before the arm is judged (`pruning.arms`). Only the records of trials the spec plans
    now compete (`results.planned_trial`, as the runner's): a value an edit removed is no one's
    rival."""
    planned = planned_trial(study, spec)
    kept = {r.trial: r for r in records.values()
            if planned(r.trial, r.data_size, r.model_size, r.learning_rate)}  # fmt: skip
    now = [j for j in live if (t := j.as_trial) is not None
           and planned(t.name, t.data_size, t.model_size, t.learning_rate)]  # fmt: skip
    table = competitors(now, kept, curves)
    from scalingstudy.pruning import decide  # the forecast's numpy: only where pruning runs

    seeds, swept = judged_seeds(spec)
    return decide(table, spec.design.pruning, final_is_lowest=not spec.trainer.command,
                  seeds=seeds, rates_swept=swept)  # fmt: skip
