"""Events folded as client-go's recorder folds them (issue 40, item 6): a 1,000-trial study
wrote two Events a pass (0.33 Event writes per trial); now progress Events are written
once a window per study and reason, repeats only grow a count, and nothing said is lost."""

from __future__ import annotations

from scalingstudy.cluster.event_folding import FOLD_WINDOW, Slots, Write, flush, fold, idle
from scalingstudy.cluster.reasons import Event, EventReason, Failure, Refusal
from scalingstudy.cluster.study_events import MAX_LISTED, TrialsEvent, started_event, trial_events
from scalingstudy.status import TrialRecord


def started(*names: str) -> TrialsEvent:
    return TrialsEvent.of("Normal", EventReason.TRIALS_STARTED, names)


Timed = list[tuple[float, Event]]


def run(events: Timed, slots: Slots | None = None) -> tuple[Slots, list[Write]]:
    """Fold ``events`` (at their times) in order; every write, in order."""
    state: Slots = slots or {}
    writes: list[Write] = []
    for at, event in events:
        state, now = fold(state, event, at, f"t{at:g}")
        writes += now
    return state, writes


def test_progress_events_within_the_window_fold_into_one_that_names_every_trial() -> None:
    """Two TrialsStarted a pass was the old rate; now the first is written at once and the
    rest of a window come as one Event counting them all."""
    _, writes = run([(0, started("a", "b")), (1, started("c")), (2, started("d"))])
    assert [(w.event.message, w.count) for w in writes] == [("started 2 trials: a, b", 1)]
    _, writes = run([(0, started("a", "b")), (1, started("c")), (2, started("d")),
                     (FOLD_WINDOW + 1, started("e"))])  # fmt: skip
    later = writes[1:]
    assert [(w.event.message, w.count, w.first, w.last) for w in later] == [
        ("started 3 trials: c, d, e", 3, "t1", f"t{FOLD_WINDOW + 1:g}")
    ]


def test_a_repeated_event_is_not_written_again_until_the_window_passes_and_then_counted() -> None:
    """Nothing new said: no write. After the window, one Event carries the repeats' count."""
    blocked = Event("Warning", EventReason.TRIALS_BLOCKED, "Job x: exceeded quota")
    slots, writes = run([(0, blocked), (5, blocked), (6, blocked)])
    assert [w.count for w in writes] == [1]
    slots, writes = flush(slots, 7)
    assert writes == []
    _, writes = flush(slots, FOLD_WINDOW + 1)
    assert [(w.event, w.count, w.first, w.last) for w in writes] == [(blocked, 2, "t5", "t6")]


def test_different_words_are_written_at_once() -> None:
    """Only progress folds by reason: two trials failing are two Warnings, at once."""
    one = Event("Warning", EventReason.TRIAL_FAILED, "s-a: Error: boom")
    two = Event("Warning", EventReason.TRIAL_FAILED, "s-b: Error: boom")
    _, writes = run([(0, one), (1, two)])
    assert [w.event for w in writes] == [one, two]


def test_a_phase_change_writes_everything_held_first_then_itself() -> None:
    """The study's end loses nothing held and ends the story in order."""
    fit = [Event("Normal", EventReason.FIT_UPDATED, f"interim fit of {n} results") for n in (3, 5)]
    final = Event("Normal", EventReason.FIT_UPDATED, "final fit of 9 results")
    done = Event("Normal", EventReason.STUDY_SUCCEEDED, "all trials finished; beta_g = -0.3")
    _, writes = run([(0, started("a")), (0, fit[0]), (1, started("b", "c")), (2, fit[1]),
                     (3, final), (3, done)])  # fmt: skip
    assert [(w.event.message, w.count) for w in writes] == [
        ("started 1 trial: a", 1),
        ("interim fit of 3 results", 1),
        ("started 2 trials: b, c", 1),
        ("final fit of 9 results", 2),  # the newest fit's words
        ("all trials finished; beta_g = -0.3", 1),
    ]


def test_refusals_and_failures_are_never_held() -> None:
    for stop in (Refusal.FORBIDDEN, Failure.TOO_MANY_FAILED_TRIALS):
        warning = Event("Warning", stop, "no")
        _, writes = run([(0, started("a")), (1, started("b")), (2, warning)])
        assert [w.event.reason for w in writes] == [EventReason.TRIALS_STARTED] * 2 + [stop]


def test_held_events_are_written_by_a_later_flush_and_then_the_study_is_idle() -> None:
    slots, _ = run([(0, started("a")), (1, started("b"))])
    assert not idle(slots, 2)
    slots, writes = flush(slots, FOLD_WINDOW)
    assert [w.event.message for w in writes] == ["started 1 trial: b"]
    assert not idle(slots, FOLD_WINDOW + 1)  # its window runs from that write
    assert idle(slots, 2 * FOLD_WINDOW)


def test_a_folded_event_names_the_first_trials_and_counts_the_rest() -> None:
    many = [f"s-{i}" for i in range(MAX_LISTED + 5)]
    merged = started(*many[:3]).merged(started(*many[3:]))
    assert merged.total == len(many) and merged.trials == tuple(many[:MAX_LISTED])
    listed = ", ".join(many[:MAX_LISTED])
    assert merged.message == f"started {len(many)} trials: {listed} and 5 more"


def test_the_pass_events_keep_their_words() -> None:
    """What a user reads did not change: the same messages as before folding."""
    records = [TrialRecord(trial=f"s-{i}", data_size=100, model_size=2, seed=0,
                           status="Succeeded", loss=0.5) for i in range(12)]  # fmt: skip
    (succeeded,) = trial_events(records)
    assert succeeded.message == (
        "12 trials succeeded: s-0, s-1, s-2, s-3, s-4, s-5, s-6, s-7, s-8, s-9 and 2 more"
    )
    assert started_event([]) is None
