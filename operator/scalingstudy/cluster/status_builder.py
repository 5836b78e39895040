"""The status a pass writes, decided without I/O: phase, conditions (each reason a typed
value from `reasons.py`), counts, results and fit; the refusals that hold a study; and the
guard that keeps the whole status inside one etcd object."""

from __future__ import annotations

import json
from collections.abc import Sequence

from scalingstudy.cluster.reasons import ConditionReason, Failure, Refusal, Stop, stamped
from scalingstudy.cluster.reconcile import Pass
from scalingstudy.contract import STATUS_BYTES_MAX
from scalingstudy.results import NOT_FITTABLE
from scalingstudy.status import (
    Condition,
    DesignStatus,
    FitStatus,
    Phase,
    ScalingStudyStatus,
)


def phase_of(p: Pass, fit_error: str | None, fit_final: bool) -> tuple[Phase, Stop | None]:
    """The phase and, for Failed, why."""
    if p.failed_reason:
        return "Failed", Stop(Failure.TOO_MANY_FAILED_TRIALS, p.failed_reason)
    if p.finished:
        if fit_error:
            return "Failed", Stop(Failure.FIT_FAILED, f"fit failed: {fit_error}")
        return ("Succeeded", None) if fit_final else ("Fitting", None)
    if p.counts.running or p.counts.succeeded or p.counts.failed or p.counts.pruned:
        return "Running", None
    return "Pending", None


_PROGRESSING_REASON: dict[Phase, ConditionReason] = {
    "Pending": ConditionReason.TRIALS_PENDING,
    "Running": ConditionReason.TRIALS_RUNNING,
    "Fitting": ConditionReason.FITTING,
    "Succeeded": ConditionReason.FINISHED,
    "Failed": ConditionReason.STOPPED,
}


def conditions_for(
    phase: Phase,
    stop: Stop | None,
    previous: Sequence[Condition],
    generation: int,
    now: str,
    complete_reason: str | None = None,
    progress_note: str | None = None,
) -> list[Condition]:
    """Kubernetes-style conditions; lastTransitionTime moves only when status changes.
    ``complete_reason``: why a Succeeded study ended (the design's stop reason). A refusal
    that only a new spec fixes also makes SpecValid False, with its own reason.
    ``progress_note``: what the study waits for (a fit to be tried again), said in
    Progressing while it progresses."""
    spec_error = stop if isinstance(stop.kind if stop else None, Refusal) else None
    failed = phase == "Failed"
    wanted = [
        Condition(
            type="SpecValid",
            status="False" if spec_error else "True",
            reason=spec_error.kind if spec_error else ConditionReason.VALID,
            message=spec_error.message if spec_error else None,
        ),
        Condition(
            type="Progressing",
            status="True" if phase in ("Pending", "Running", "Fitting") else "False",
            reason=_PROGRESSING_REASON[phase],
            message=progress_note if phase in ("Pending", "Running", "Fitting") else None,
        ),
        Condition(
            type="Complete",
            status="True" if phase == "Succeeded" else "False",
            reason=(complete_reason or ConditionReason.STUDY_SUCCEEDED)
            if phase == "Succeeded"
            else ConditionReason.NOT_FINISHED,
        ),
        Condition(
            type="Failed",
            status="True" if failed else "False",
            reason=stop.kind if failed and stop else ConditionReason.NOT_FAILED,
            message=stop.message if failed and stop else None,
        ),
    ]
    return [stamped(cond, previous, generation, now) for cond in wanted]


def build_status(
    p: Pass,
    generation: int,
    before: ScalingStudyStatus,
    fit: FitStatus | None,
    fit_error: str | None,
    now: str,
    extra: Sequence[Condition] = (),
    design: DesignStatus | None = None,
    refusal: Stop | None = None,
    fit_note: str | None = None,
) -> ScalingStudyStatus:
    """The status after a pass. ``fit`` is the new fit, or the one in status when none ran;
    a fit is final only while the study still is (a spec change may add trials), and a
    stale one (made with other fit settings, `Pass.stale_fit`) that no new fit replaced is
    dropped. ``extra`` conditions (TrialsBlocked) follow the four of the phase; ``design``
    is what the study's design chose and spent; ``refusal``: the study is held (Failed)
    for that reason while its results are still collected. ``fit_note``: why a fit that
    is due has not been made (it ran to no answer and is tried again): the study is still
    Fitting then, never Failed, whatever the data (only the pass knows whether they can
    be fitted: `Pass.needs_fit`)."""
    if fit is not None and p.stale_fit and fit == before.fit:
        fit = None
    if fit is not None and fit.final and not p.final:
        fit = fit.model_copy(update={"final": False})
    final_error = fit_error if p.finished else None
    if p.final and fit is None and not final_error and not p.needs_fit:
        final_error = NOT_FITTABLE
    phase, stop = phase_of(p, final_error, bool(fit and fit.final))
    if refusal is not None:
        phase, stop = "Failed", refusal
    order = {name: i for i, name in enumerate(p.records)}
    rows = sorted(
        p.records.values(), key=lambda r: (r.data_size, r.model_size, r.seed, order[r.trial])
    )
    done = p.counts.succeeded + p.counts.failed + p.counts.pruned  # a pruned trial is finished
    complete = design.stop_reason if design else None
    conditions = conditions_for(phase, stop, before.conditions, generation, now, complete,
                                fit_note)  # fmt: skip
    return ScalingStudyStatus(
        phase=phase,
        observed_generation=generation,
        conditions=[*conditions, *extra],
        trials=p.counts,
        progress=f"{done}/{p.counts.total}",
        results=rows,
        fit=fit,
        design=design,
    )


def refused_status(
    before: ScalingStudyStatus, generation: int, refusal: Stop, now: str
) -> ScalingStudyStatus | None:
    """A study the operator will not run as it is (a spec it cannot even read, or a Job the
    API server refused): Failed with the reason, every result kept. None when status says
    so already."""
    if not is_new_refusal(before, generation, refusal):
        return None
    conditions = conditions_for("Failed", refusal, before.conditions, generation, now)
    return before.model_copy(
        update={"phase": "Failed", "observed_generation": generation, "conditions": conditions}
    )


def is_new_refusal(before: ScalingStudyStatus, generation: int, refusal: Stop) -> bool:
    """Whether status does not say this refusal of this generation yet (its Event is due)."""
    failed = next((c for c in before.conditions if c.type == "Failed"), None)
    return not (
        failed is not None
        and failed.status == "True"
        and failed.observed_generation == generation
        and failed.reason == refusal.kind
        and failed.message == refusal.message
    )


def held_refusal(before: ScalingStudyStatus, generation: int) -> Stop | None:
    """The refusal this generation of the spec got from the API server (a trial's Job
    rejected as invalid), read back from its condition: nothing more is created until the
    spec changes. The operator's own checks (InvalidSpec, Forbidden) run again every pass
    instead, so they are not held."""
    valid = next((c for c in before.conditions if c.type == "SpecValid"), None)
    if (
        valid is None
        or valid.status != "False"
        or valid.observed_generation != generation
        or valid.reason != Refusal.JOB_REJECTED
    ):
        return None
    return Stop(Refusal.JOB_REJECTED, valid.message or "")


def within_limit(
    after: ScalingStudyStatus, generation: int, now: str, limit: int = STATUS_BYTES_MAX
) -> ScalingStudyStatus:
    """The status as written, or, when it would not fit in one etcd object, the study
    Failed with the reason and without its fit (result rows are bounded so that the rows
    of MAX_TRIALS trials always fit: a status that could not be written would hang it)."""
    size = len(json.dumps(after.to_json(), ensure_ascii=False, separators=(",", ":")).encode())
    if size <= limit:
        return after
    stop = Stop(
        Failure.STATUS_TOO_LARGE,
        f"status too large: {size} bytes, above the {limit} one object may take",
    )
    conditions = conditions_for("Failed", stop, after.conditions, generation, now)
    kept = [c for c in after.conditions if c.type not in {c.type for c in conditions}]
    return after.model_copy(
        update={"phase": "Failed", "fit": None, "conditions": [*conditions, *kept]}
    )
