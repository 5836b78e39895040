"""Every reason the operator writes, in one place: the reasons of its conditions and of its
Events, and why a study stops or is refused. A leaf module (it imports only the status
model), so the adapters that emit Events do not import the pass decision.

A reason is a typed value from the point where it is decided to the condition or Event
that carries it: nothing is parsed back out of a message. The README's status table lists
the same values, and a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from scalingstudy.status import Condition


class Refusal(StrEnum):
    """Why the operator will not run a study as it is. Each is its own condition reason."""

    INVALID_SPEC = "InvalidSpec"
    """The full validation rejects a spec the CRD schema let through."""
    FORBIDDEN = "Forbidden"
    """The spec asks for more than the operator's admission rules allow."""
    JOB_REJECTED = "JobRejected"
    """The API server refused a trial's Job as invalid (400/422)."""
    CONFIG_MAP_CONFLICT = "ConfigMapConflict"
    """A ConfigMap that is not the study's holds the name its trials mount."""

    @property
    def waits_for_spec(self) -> bool:
        """Only a new spec can fix it: it holds until the generation changes. A ConfigMap
        conflict does not: it is checked again every pass and clears when the object
        goes."""
        return self is not Refusal.CONFIG_MAP_CONFLICT


class Failure(StrEnum):
    """Reasons of the `Failed` condition (besides the spec-fixable refusals)."""

    TOO_MANY_FAILED_TRIALS = "TooManyFailedTrials"
    FIT_FAILED = "FitFailed"
    STATUS_TOO_LARGE = "StatusTooLarge"


@dataclass(frozen=True)
class Stop:
    """Why a study is Failed: the kind (a condition reason) and the sentence for people."""

    kind: Failure | Refusal
    message: str

    def warning(self) -> Event:
        """The Warning Event that says it."""
        return Event("Warning", self.kind, self.message)


class ConditionReason(StrEnum):
    """Reasons of conditions that say all is well or that work is under way."""

    VALID = "Valid"
    TRIALS_PENDING = "TrialsPending"
    TRIALS_RUNNING = "TrialsRunning"
    FITTING = "Fitting"
    FINISHED = "Finished"
    STOPPED = "Stopped"
    STUDY_SUCCEEDED = "StudySucceeded"
    NOT_FINISHED = "NotFinished"
    NOT_FAILED = "NotFailed"
    PODS_CREATED = "PodsCreated"
    PODS_NOT_CREATED = "PodsNotCreated"
    JOB_NAME_TAKEN = "JobNameTaken"
    """A trial's Job name is held by a Job the study does not own (TrialsBlocked)."""
    CREATE_REFUSED = "CreateRefused"
    """The API server refused to create an object (403: RBAC, a quota, a webhook)."""


class EventReason(StrEnum):
    """Reasons of the Events the operator emits (refusals use their own value)."""

    TRIALS_STARTED = "TrialsStarted"
    TRIALS_SUCCEEDED = "TrialsSucceeded"
    TRIAL_FAILED = "TrialFailed"
    FIT_UPDATED = "FitUpdated"
    STUDY_SUCCEEDED = "StudySucceeded"
    STUDY_FAILED = "StudyFailed"
    WINDOW_MOVED = "WindowMoved"
    GRID_EXTENDED = "GridExtended"
    DESIGN_STOPPED = "DesignStopped"
    TRIALS_BLOCKED = "TrialsBlocked"
    RESULT_MISMATCH = "ResultMismatch"
    TRIALS_PRUNED = "TrialsPruned"


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: EventReason | Refusal | Failure
    message: str


def stamped(cond: Condition, previous: Sequence[Condition], generation: int, now: str) -> Condition:
    """The condition with its generation, and lastTransitionTime kept from the previous
    condition of its type while its status is unchanged (else ``now``)."""
    old = next((c for c in previous if c.type == cond.type), None)
    kept = old.last_transition_time if old and old.status == cond.status else None
    cond.last_transition_time = kept or now
    cond.observed_generation = generation
    return cond
