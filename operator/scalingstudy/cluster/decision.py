"""One reconcile pass of a study, decided without I/O.

The shell gathers the observed state (the study's Jobs, the results already in status,
the results it just collected for finished Jobs), calls `plan_pass`, applies the actions,
optionally fits, and writes `build_status`. Everything is recomputed from the cluster on
every pass, so a restarted operator picks up exactly where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scalingstudy.cluster.observe import JobState
from scalingstudy.plan import Trial
from scalingstudy.reconcile import decide
from scalingstudy.results import TrialRecord, fittable
from scalingstudy.status import Condition, Phase

MAX_LISTED = 10  # trial names quoted in one aggregated Event


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Pass:
    """The actions of one pass and the facts the status is built from."""

    records: dict[str, TrialRecord]
    new_records: tuple[TrialRecord, ...]
    create: tuple[Trial, ...]
    delete: tuple[str, ...]
    counts: dict[str, int]
    finished: bool
    failed_reason: str | None
    needs_fit: bool
    events: list[Event] = field(default_factory=list)


def to_collect(jobs: Sequence[JobState], recorded: Mapping[str, TrialRecord]) -> list[JobState]:
    """Finished Jobs whose result is not in status yet: the shell reads these results."""
    return [j for j in jobs if j.phase in ("succeeded", "failed") and j.trial not in recorded]


def _names(trials: Sequence[str]) -> str:
    shown = ", ".join(trials[:MAX_LISTED])
    more = len(trials) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def plan_pass(
    planned: Sequence[Trial],
    jobs: Sequence[JobState],
    recorded: Mapping[str, TrialRecord],
    collected: Sequence[TrialRecord],
    *,
    parallelism: int,
    max_failed: int,
    fitted_results: int | None,
    final_fit: bool,
) -> Pass:
    """Which Jobs to create or delete, what to record, whether to fit.

    ``fitted_results`` is how many succeeded results the fit in status used (None: no
    fit yet); a refit is needed when that number changed, or when the study just finished
    and its fit is not final yet.
    """
    records = dict(recorded)
    new = [r for r in collected if r.trial not in records]
    records.update({r.trial: r for r in new})
    planned_names = {t.name for t in planned}
    by_trial = {j.trial: j for j in jobs}
    # Queued (suspended) Jobs occupy a parallelism slot too: Kueue decides when they run.
    active = {j.trial for j in jobs if j.phase in ("active", "queued") and j.trial not in records}
    # Finished Jobs whose result could not be read yet (waiting for a scrape) hold no slot
    # and are not started again; the study is not finished while any remain.
    uncollected = {
        j.trial for j in jobs if j.phase in ("succeeded", "failed") and j.trial not in records
    } & planned_names
    startable = [t for t in planned if t.name not in uncollected]
    decision = decide(startable, records, active, parallelism, max_failed)
    # A Job exists for these already (finished but not collected, or being deleted).
    create = tuple(t for t in decision.start if t.name not in by_trial)
    delete = tuple(
        sorted(j.name for j in jobs if j.trial in active and j.trial not in planned_names)
    )
    if decision.failed:
        # Stop spending: trials still running are left to finish but none are started.
        create = ()
    relevant = [r for n, r in records.items() if n in planned_names]
    succeeded = [r for r in relevant if r.status == "Succeeded"]
    running = sum(
        1 for j in jobs if j.trial in planned_names and j.trial in active and j.phase == "active"
    )
    counts = {
        "total": len(planned),
        "succeeded": len(succeeded),
        "failed": len(relevant) - len(succeeded),
        "running": running + len(create),
    }
    counts["pending"] = max(
        counts["total"] - counts["succeeded"] - counts["failed"] - counts["running"], 0
    )
    finished = (decision.finished and not uncollected) or decision.failed
    needs_fit = fittable(relevant) and (
        fitted_results != len(succeeded) or (finished and not decision.failed and not final_fit)
    )
    events: list[Event] = []
    if create:
        events.append(
            Event(
                "Normal",
                "TrialsStarted",
                f"started {len(create)} trial(s): {_names([t.name for t in create])}",
            )
        )
    ok = [r.trial for r in new if r.status == "Succeeded"]
    if ok:
        events.append(
            Event("Normal", "TrialsSucceeded", f"{len(ok)} trial(s) succeeded: {_names(ok)}")
        )
    for r in new:
        if r.status == "Failed":
            events.append(
                Event(
                    "Warning", "TrialFailed", f"{r.trial}: {r.reason}: {(r.message or '')[-400:]}"
                )
            )
    return Pass(
        records=records,
        new_records=tuple(new),
        create=create,
        delete=delete,
        counts=counts,
        finished=finished,
        failed_reason=decision.failed_reason,
        needs_fit=needs_fit,
        events=events,
    )


def phase_of(
    p: Pass, spec_error: str | None, fit_error: str | None, fit_final: bool
) -> tuple[Phase, str | None]:
    """The phase and, for Failed, the reason in one line."""
    if spec_error:
        return "Failed", spec_error
    if p.failed_reason:
        return "Failed", p.failed_reason
    if p.finished:
        if fit_error:
            return "Failed", f"fit failed: {fit_error}"
        return ("Succeeded", None) if fit_final else ("Fitting", None)
    if p.counts["running"] or p.counts["succeeded"] or p.counts["failed"]:
        return "Running", None
    return "Pending", None


def conditions_for(
    phase: Phase,
    reason: str | None,
    previous: Sequence[Mapping[str, Any]],
    generation: int,
    now: str,
    spec_error: str | None,
) -> list[dict[str, Any]]:
    """Kubernetes-style conditions; lastTransitionTime moves only when status changes."""
    failed_kind = (
        "InvalidSpec"
        if spec_error
        else "FitFailed"
        if reason and reason.startswith("fit failed")
        else "TooManyFailedTrials"
    )
    wanted = [
        Condition(
            type="SpecValid",
            status="False" if spec_error else "True",
            reason="InvalidSpec" if spec_error else "Valid",
            message=spec_error,
        ),
        Condition(
            type="Progressing",
            status="True" if phase in ("Pending", "Running", "Fitting") else "False",
            reason={
                "Pending": "TrialsPending",
                "Running": "TrialsRunning",
                "Fitting": "Fitting",
                "Succeeded": "Finished",
                "Failed": "Stopped",
            }[phase],
        ),
        Condition(
            type="Complete",
            status="True" if phase == "Succeeded" else "False",
            reason="StudySucceeded" if phase == "Succeeded" else "NotFinished",
        ),
        Condition(
            type="Failed",
            status="True" if phase == "Failed" else "False",
            reason=failed_kind if phase == "Failed" else "NotFailed",
            message=reason if phase == "Failed" else None,
        ),
    ]
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in wanted:
        old = before.get(cond.type)
        same = old is not None and old.get("status") == cond.status
        cond.last_transition_time = str(old.get("lastTransitionTime")) if same and old else now
        cond.observed_generation = generation
        out.append(cond.model_dump(by_alias=True, exclude_none=True))
    return out


def _rounded(value: Any, digits: int = 4) -> Any:
    """Significant digits a reader can use (and `kubectl get` columns stay narrow)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value


def fit_status(fit: Mapping[str, Any], final: bool, n_results: int) -> dict[str, Any]:
    """The engine's JSON (DESIGN §5) in the status' camelCase shape, 4 significant digits."""
    return dict(_rounded(_fit_status(fit, final, n_results)))


def _fit_status(fit: Mapping[str, Any], final: bool, n_results: int) -> dict[str, Any]:
    lc = fit.get("learning_curve") or {}
    ms = fit.get("model_size") or None
    out: dict[str, Any] = {
        "final": final,
        "basedOnResults": n_results,
        "learningCurve": {
            "form": lc.get("form"),
            "alpha": lc.get("alpha"),
            "beta": lc.get("beta"),
            "gamma": lc.get("gamma"),
            "betaInterval": lc.get("beta_interval"),
            "r2Log": lc.get("r2_log"),
            "powerLawRange": lc.get("power_law_range"),
        },
        "predictions": list(fit.get("predictions") or []),
        "warnings": list(fit.get("warnings") or []),
    }
    if ms:
        out["modelSize"] = {
            "alpha": ms.get("alpha"),
            "beta": ms.get("beta"),
            "betaInterval": ms.get("beta_interval"),
            "method": ms.get("method"),
            "gridBeta": ms.get("grid_beta"),
            "estimates": list(ms.get("estimates") or []),
        }
    if fit.get("extrapolation"):
        out["extrapolation"] = fit["extrapolation"]
    if fit.get("data_for_target"):
        out["dataForTarget"] = fit["data_for_target"]
    if fit.get("joint"):
        out["joint"] = fit["joint"]
    return out


def summary_event(
    phase: Phase, previous_phase: str | None, reason: str | None, fit: Mapping[str, Any] | None
) -> Event | None:
    if phase == previous_phase:
        return None
    if phase == "Succeeded":
        beta = ((fit or {}).get("learningCurve") or {}).get("beta")
        return Event("Normal", "StudySucceeded", f"all trials finished; beta_g = {beta}")
    if phase == "Failed":
        return Event("Warning", "StudyFailed", reason or "failed")
    return None
