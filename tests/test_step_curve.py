"""The curve a running trial shows on the dashboard's loss-against-step panel (issue 38
item 2): bounded, with steps that stay put between pushes, the latest always in it; the
same points in the SDK's push and on the built-in trainer's /metrics."""

from __future__ import annotations

import itertools
import math
import re

from prometheus_client import generate_latest

from scalingstudy_sdk import contract
from scalingstudy_sdk.progress import StepCurve, curve_exposition
from scalingstudy_trainer.progress import Progress

ENV = {"SCALINGSTUDY_NAMESPACE": "ns", "SCALINGSTUDY_STUDY": "demo",
       "SCALINGSTUDY_TRIAL": "demo-d64-m8-s0", "SCALINGSTUDY_DATA_SIZE": "64",
       "SCALINGSTUDY_MODEL_SIZE": "8", "SCALINGSTUDY_SEED": "0"}  # fmt: skip


def evaluation(step: int) -> dict[str, object]:
    return {"step": step, "validation_loss": 10.0 / (1 + step)}


def test_a_long_run_keeps_a_bounded_spread_curve_whose_steps_never_come_back() -> None:
    curve = StepCurve(limit=8)
    ever: set[int] = set()
    gone: set[int] = set()
    shown: set[int] = set()
    for step in range(0, 10_000, 7):
        curve.add(evaluation(step))
        points = curve.points()
        now = {s for s, _ in points}
        assert len(points) <= 8 and [s for s, _ in points] == sorted(now)
        gone |= shown - now
        assert not (gone & now), "a step dropped earlier is shown again"
        shown = now
        ever |= now
    # Series a scraper ever sees: half the limit more per halving (logarithmic in the
    # evaluations), not one per push.
    halvings = math.ceil(math.log2(len(range(0, 10_000, 7)) / 8))
    assert len(ever) <= 8 + 4 * halvings, len(ever)
    kept = [s for s, _ in curve.points()]
    assert kept[0] == 0 and len(kept) >= 4  # the start, and spread over the run
    assert len({b - a for a, b in itertools.pairwise(kept)}) == 1, kept  # every stride-th
    # At the end the latest joins them: the panel shows where the trial stopped.
    assert curve.points(final=True)[-1] == (9996, 10.0 / 9997)


def test_repeated_steps_replace_and_keep_the_spacing_and_whole_floats_count() -> None:
    once, twice = StepCurve(limit=4), StepCurve(limit=4)
    for step in range(0, 100, 5):
        once.add(evaluation(step))
        twice.add({"step": float(step), "validation_loss": 99.0})  # a float step, whole
        twice.add(evaluation(step))  # the same step again: replaces the first
    assert once.points() == twice.points()
    assert once.points(final=True) == twice.points(final=True)
    twice.add({"step": 95.5, "validation_loss": 1.0})  # not a step: ignored
    assert twice.points(final=True) == once.points(final=True)


def test_a_new_run_from_the_start_replaces_the_curve_and_bad_fields_are_ignored() -> None:
    curve = StepCurve(limit=4)
    for step in (10, 20, 30):
        curve.add(evaluation(step))
    for bad in ({"step": "40", "validation_loss": 1.0}, {"step": True, "validation_loss": 1.0},
                {"step": 40, "validation_loss": None}, {"step": 40}):  # fmt: skip
        curve.add(bad)
    assert [s for s, _ in curve.points(final=True)] == [10, 20, 30]
    curve.add({"step": 40, "validation_loss": math.nan})  # diverged: shown as it was
    assert math.isnan(curve.points(final=True)[-1][1])
    curve.add(evaluation(5))  # a retry that started over
    assert curve.points(final=True) == [(5, 10.0 / 6)]


def test_the_exposition_is_one_sample_per_step_with_the_trials_sizes() -> None:
    text = curve_exposition([(10, 2.0), (20, math.nan)], ENV)
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples == [
        f'{contract.CURVE_GAUGE}{{data_size="64",model_size="8",seed="0",step="10"}} 2.0',
        f'{contract.CURVE_GAUGE}{{data_size="64",model_size="8",seed="0",step="20"}} NaN',
    ]
    assert curve_exposition([], ENV) == ""


def test_the_trainers_metrics_show_the_same_points_and_drop_the_thinned_ones() -> None:
    progress = Progress(ENV)
    sketch = StepCurve()
    for step in range(0, 2_000, 10):
        progress.on_event("eval", evaluation(step))
        sketch.add(evaluation(step))
    text = generate_latest(progress.registry).decode()
    found = sorted(
        int(m.group(1))
        for m in re.finditer(rf'^{contract.CURVE_GAUGE}{{[^}}]*step="(\d+)"', text, re.M)
    )
    assert found == [s for s, _ in sketch.points()]
    assert 3 <= len(found) <= contract.CURVE_POINTS and found[0] == 0
    assert 'trial="demo-d64-m8-s0"' in text
    progress.on_event("eval", evaluation(5))  # a run that started over: its curve alone
    text = generate_latest(progress.registry).decode()
    assert re.findall(rf'^{contract.CURVE_GAUGE}{{[^}}]*step="(\d+)"', text, re.M) == ["5"]
