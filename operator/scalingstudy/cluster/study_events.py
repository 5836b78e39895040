"""The Events of a pass, decided without I/O: trials started, finished and failed, the fit,
the study's end and an adaptive design's moves. Aggregated per pass (one Event names up
to MAX_LISTED trials) and folded across passes by `event_folding` (a TrialsEvent keeps
the trials it names, so two fold into one that counts both), which keeps API writes per
trial low."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scalingstudy.cluster.reasons import Event, EventReason, Refusal
from scalingstudy.planning.plan import Trial
from scalingstudy.render.table import short
from scalingstudy.status import EARLY_STOPS, DesignStatus, ScalingStudyStatus, TrialRecord
from scalingstudy.words import plural

MAX_LISTED = 10  # trial names quoted in one aggregated Event


def _names(listed: Sequence[str], total: int) -> str:
    more = total - len(listed)
    return ", ".join(listed) + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class TrialsEvent(Event):
    """An Event about trials, with the trials it names (the first MAX_LISTED) and how many
    it is about, so two of them fold into one that says both (`event_folding`)."""

    trials: tuple[str, ...] = ()
    total: int = 0

    @classmethod
    def of(cls, type: str, reason: EventReason, trials: Sequence[str]) -> TrialsEvent:
        listed = tuple(trials[:MAX_LISTED])
        return cls(type, reason, _trials_message(reason, listed, len(trials)), listed, len(trials))

    def merged(self, later: Event) -> TrialsEvent:
        """This Event and a later one of its reason as one: every trial counted."""
        if not isinstance(later, TrialsEvent) or later.reason != self.reason:
            raise ValueError(f"cannot fold {later.reason} into {self.reason}")
        listed = (self.trials + later.trials)[:MAX_LISTED]
        total = self.total + later.total
        message = _trials_message(self.reason, listed, total)
        return TrialsEvent(self.type, self.reason, message, listed, total)


def _trials_message(reason: str, listed: Sequence[str], total: int) -> str:
    names = _names(listed, total)
    if reason == EventReason.TRIALS_STARTED:
        return f"started {plural(total, 'trial')}: {names}"
    return f"{plural(total, 'trial')} succeeded: {names}"


def started_event(created: Sequence[Trial]) -> Event | None:
    """The Event of the trials whose Jobs were created (None: none were)."""
    if not created:
        return None
    return TrialsEvent.of("Normal", EventReason.TRIALS_STARTED, [t.name for t in created])


def trial_events(new: Sequence[TrialRecord]) -> list[Event]:
    """The Events of the pass's new results."""
    ok = [r.trial for r in new if r.status == "Succeeded"]
    events: list[Event] = []
    if ok:
        events.append(TrialsEvent.of("Normal", EventReason.TRIALS_SUCCEEDED, ok))
    events += [
        Event("Warning", EventReason.TRIAL_FAILED,
              f"{r.trial}: {r.reason}: {(r.message or '')[-400:]}")
        for r in new
        if r.status == "Failed"
    ]  # fmt: skip
    return events


def status_events(
    new: Sequence[TrialRecord], before: ScalingStudyStatus, after: ScalingStudyStatus,
    fitted: bool,
) -> list[Event]:  # fmt: skip
    """The Events of the pass's results, the fit's when one ran, and the study's end once."""
    events = trial_events(new)
    fit = after.fit
    if fitted and fit is not None:
        lc, ms = fit.learning_curve, fit.model_size
        events.append(
            Event(
                "Normal",
                EventReason.FIT_UPDATED,
                f"{'final' if fit.final else 'interim'} fit of {fit.based_on_results} results: "
                f"beta_g={short(lc.beta if lc else None, 3)} {lc.beta_interval if lc else None}, "
                f"beta_p={short(ms.beta if ms else None, 3)}",
            )
        )
    if after.phase == before.phase:
        return events
    if after.phase == "Succeeded":
        beta = fit.learning_curve.beta if fit and fit.learning_curve else None  # 4 digits
        why = f" ({after.design.stop_reason})" if after.design and after.design.stop_reason else ""
        events.append(
            Event(
                "Normal", EventReason.STUDY_SUCCEEDED, f"all trials finished{why}; beta_g = {beta}"
            )
        )
    elif after.phase == "Failed":
        failed = next((c for c in after.conditions if c.type == "Failed"), None)
        if failed is not None and failed.reason in set(Refusal):
            return events  # the refusal's own Warning Event says it
        message = failed.message or failed.reason if failed else None
        events.append(Event("Warning", EventReason.STUDY_FAILED, message or "failed"))
    return events


def design_events(
    before: DesignStatus | None, after: DesignStatus | None, listed_max: int
) -> list[Event]:
    """Say when an adaptive study's window moves at a new data size, when it trains a
    model size beyond the listed ones, and when it stops starting trials."""
    if after is None:
        return []
    old = {w.data_size: w.model_sizes for w in (before.windows if before else [])}
    events: list[Event] = []
    previous: list[int] | None = None
    for w in after.windows:
        if w.data_size not in old and previous is not None and w.model_sizes != previous:
            events.append(Event(
                "Normal", EventReason.WINDOW_MOVED,
                f"data size {w.data_size}: model sizes {w.model_sizes} (was {previous})",
            ))  # fmt: skip
        beyond = [m for m in w.model_sizes if m > listed_max]
        if beyond and not [m for m in old.get(w.data_size, []) if m > listed_max]:
            events.append(Event(
                "Normal", EventReason.GRID_EXTENDED,
                f"data size {w.data_size}: {'model size' if len(beyond) == 1 else 'model sizes'} "
                f"{beyond} beyond the listed ones, "
                f"where the best model was at the largest",
            ))  # fmt: skip
        previous = w.model_sizes
    if after.stop_reason in EARLY_STOPS and (
        before is None or before.stop_reason != after.stop_reason
    ):
        events.append(Event(
            "Normal", EventReason.DESIGN_STOPPED,
            f"{after.stop_reason}: no more trials start; spent {after.device_seconds:.0f} "
            f"{after.device.upper()}-seconds ({after.spend or '?'} of the full grid's estimate)",
        ))  # fmt: skip
    return events
