"""Pruning on a cluster, decided without I/O: who competes, what a decision writes on the
trial's Job, which Jobs carry one, and whether pushed progress agrees with the log.

Restart safety. A decision is first written on the trial's Job as an annotation (durable:
it lives as long as the Job), then recorded in status (a Pruned record), then the Job is
deleted. Every pass records each annotated Job that status does not hold yet and deletes
each annotated Job that status does hold, so a restart at any point between these steps
records the trial once, never retries it, and never prunes it twice; the annotation
carries the compact curve, so no curve is lost when the pod goes before status is written.

Forgery. A decision rests only on curves read from each trial's own pod log. What the
Pushgateway holds (anyone who can reach it may push) is compared with the log at the same
step: a disagreement is counted, as a result that disagrees with its termination message
is (`collect.Mismatch`), and changes nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalingstudy.cluster.collect import AGREE_REL
from scalingstudy.cluster.observe import PRUNED_ANNOTATION as PRUNED_ANNOTATION
from scalingstudy.cluster.observe import JobState
from scalingstudy.pruning import Competitor, Prune, decide
from scalingstudy.records import TrialRecord, compact_curve
from scalingstudy.spec import ScalingStudySpec
from scalingstudy_sdk.curve import Curve, CurvePoint

#: At most this often (seconds) a study's running trials' logs are read and judged.
PRUNE_INTERVAL = 10.0


@dataclass(frozen=True)
class PruneMark:
    """A pruning decision as its Job carries it: where the trial stopped, why, how long
    it had run, and its compact curve ([step, validation loss] pairs)."""

    step: int
    message: str
    seconds: float | None
    curve: tuple[tuple[float, float], ...]

    def to_annotation(self) -> str:
        body = {"step": self.step, "message": self.message, "seconds": self.seconds,
                "curve": [list(p) for p in self.curve]}  # fmt: skip
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, text: str) -> PruneMark:
        """The mark as written; an unreadable one is still a decision (the Job was pruned)
        and is recorded as such, with no curve."""
        try:
            raw: Any = json.loads(text)
            curve = tuple((float(s), float(v)) for s, v in raw.get("curve") or [])
            seconds = raw.get("seconds")
            return cls(int(raw["step"]), str(raw.get("message") or "pruned"),
                       None if seconds is None else float(seconds), curve)  # fmt: skip
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls(0, "pruned (the Job's prune annotation could not be read)", None, ())

    def as_curve(self) -> Curve:
        return Curve(tuple(CurvePoint(step=int(s), validation_loss=v) for s, v in self.curve))


def mark_of(prune: Prune, curve: Curve, seconds: float | None) -> PruneMark:
    pairs = tuple((float(s), float(v)) for s, v in compact_curve(curve))
    return PruneMark(prune.step, prune.message, seconds, pairs)


def pruned_record(job: JobState, mark: PruneMark) -> TrialRecord | None:
    """The Pruned record of an annotated Job (None: not one of the study's trials)."""
    trial = job.as_trial
    if trial is None:
        return None
    return TrialRecord.pruned(trial, mark.step, mark.message, mark.as_curve(), mark.seconds)


def marked(jobs: Iterable[JobState]) -> dict[str, PruneMark]:
    """The decisions the study's Jobs carry, by trial."""
    return {j.trial: PruneMark.from_annotation(j.pruned) for j in jobs if j.pruned is not None}


def to_record(jobs: Sequence[JobState], recorded: Mapping[str, TrialRecord]) -> list[TrialRecord]:
    """Pruned records of the annotated Jobs that status does not hold yet."""
    marks = marked(jobs)
    out = []
    for job in jobs:
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
    far) and the trials that finished with a result (their recorded loss, and their curve
    when it could be read). Failed and pruned trials compete with no one."""
    out = []
    for job in live:
        t = job.as_trial
        assert t is not None  # `running` keeps only trials
        out.append(Competitor(t.name, t.data_size, t.model_size, t.seed, t.learning_rate,
                              curves.get(t.name, Curve()), None, True))  # fmt: skip
    for r in records.values():
        if r.status == "Succeeded" and r.loss is not None:
            out.append(Competitor(r.trial, r.data_size, r.model_size, r.seed, r.learning_rate,
                                  curves.get(r.trial, Curve()), r.loss, False))  # fmt: skip
    return out


def judge(
    spec: ScalingStudySpec, live: Sequence[JobState], records: Mapping[str, TrialRecord],
    curves: Mapping[str, Curve],
) -> list[Prune]:  # fmt: skip
    """The running trials to stop, by the study's pruning settings, exactly as the local
    runner asks: the built-in trainer (no custom command) reports its lowest evaluation,
    so its best so far bounds its final."""
    table = competitors(live, records, curves)
    return decide(table, spec.design.pruning, final_is_lowest=not spec.trainer.command)


@dataclass(frozen=True)
class Forged:
    """Pushed progress of a running trial that its own log contradicts at the same step."""

    trial: str
    step: int
    log_value: float
    pushed_value: float


def forged(pushed: Mapping[str, Mapping[str, float]], curves: Mapping[str, Curve]) -> list[Forged]:
    """Pushed latest evaluations (by trial: ``steps`` and ``validation_loss``, as the
    progress group's gauges read) that disagree with the trial's log at that step. A step
    the log does not have (yet) is not compared: it proves nothing either way."""
    out = []
    for trial, values in sorted(pushed.items()):
        curve, step, value = curves.get(trial), values.get("steps"), values.get("validation_loss")
        if curve is None or step is None or value is None or not math.isfinite(step):
            continue
        logged = next((p.validation_loss for p in curve.points if p.step == int(step)), None)
        if logged is None or not math.isfinite(logged):
            continue
        if not math.isfinite(value) or abs(logged - value) > AGREE_REL * max(
            abs(logged), abs(value)
        ):
            out.append(Forged(trial, int(step), logged, value))
    return out
