"""Pushed progress checked against a running trial's own log (issue 38 item 5): the
Pushgateway takes pushes from anyone who can reach it, so what a trial's progress group
holds (its latest evaluation, and the curve the dashboard plots against step) never
drives a decision; where it disagrees with the log it is counted once and reported in one
Warning Event a pass. Pure: Prometheus' answer and the logs' curves in, forgeries out."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalingstudy.cluster.collect import AGREE_REL
from scalingstudy.cluster.prometheus import PUSH_TIME
from scalingstudy.cluster.reasons import Event, EventReason
from scalingstudy_sdk.contract import CURVE_GAUGE, CURVE_POINTS
from scalingstudy_sdk.curve import Curve

#: Trials a forged-progress Event names (the others are counted).
FORGED_NAMED = 5
#: A pushed curve's step label longer than this is no step (nor an int Python parses).
STEP_DIGITS = 18
#: At most this many pushed curve points of a trial are compared with its log.
CURVE_COMPARED = 2 * CURVE_POINTS + 1
#: At most this many counted steps of one running trial are remembered (`unseen`).
SEEN_MAX = 8 * CURVE_COMPARED


@dataclass(frozen=True)
class Forged:
    """Pushed progress of a running trial that its own log contradicts at the same step."""

    trial: str
    step: int
    log_value: float
    pushed_value: float


def current(
    pushed: Mapping[str, Mapping[str, float]], since: Mapping[str, float]
) -> dict[str, Mapping[str, float]]:
    """The trials' pushed progress from their current attempts: a group last pushed
    (``push_time_seconds``) before the attempt began is an earlier attempt's, which
    Prometheus holds until it scrapes the retry's first push; the retry may have
    evaluated that step again, to a slightly different loss. Not compared, not counted."""
    return {t: v for t, v in pushed.items()
            if v.get(PUSH_TIME, math.inf) >= since.get(t, -math.inf)}  # fmt: skip


def unseen(
    found: Sequence[Forged], seen: Mapping[str, frozenset[int]], live: Collection[str]
) -> tuple[list[Forged], dict[str, frozenset[int]]]:
    """The forgeries not counted yet, and what to remember: the steps counted of each
    running trial (the progress group holds a trial's latest evaluation and its thinned
    curve, read again each pass: a forged evaluation, latest or curve point, counts once;
    a trial that ended is forgotten, and at most `SEEN_MAX` steps of one are kept, the
    highest: a flood of forged steps over a long run costs bounded memory, at worst an
    old forgery counted again)."""
    fresh: list[Forged] = []
    kept = {t: s for t, s in seen.items() if t in live}
    for f in found:
        if f.step not in kept.get(f.trial, frozenset()):
            fresh.append(f)
            steps = sorted(kept.get(f.trial, frozenset()) | {f.step})
            kept[f.trial] = frozenset(steps[-SEEN_MAX:])
    return fresh, kept


def forged_event(fresh: Sequence[Forged]) -> Event | None:
    """One Warning Event for a pass's forgeries, however many (each counted in the
    metric): how many, and the first few trials with what each source says."""
    if not fresh:
        return None
    named = "; ".join(
        f"{f.trial} at step {f.step}: log {f.log_value:.6g}, pushed {f.pushed_value:.6g}"
        for f in fresh[:FORGED_NAMED]
    )
    more = len(fresh) - FORGED_NAMED
    tail = f"; and {more} more" if more > 0 else ""
    return Event(
        "Warning",
        EventReason.RESULT_MISMATCH,
        f"{len(fresh)} pushed evaluation(s) disagree with the trials' own logs: {named}{tail}."
        " Pruning reads only the log (the Pushgateway accepts pushes from anyone who can "
        "reach it)",
    )


def pushed_curves(answer: Any) -> dict[str, dict[int, float]]:
    """The pushed curve points (`contract.CURVE_GAUGE`, by trial and step) in an
    instant-vector answer (pure); samples without a whole step or a number are skipped."""
    data = answer.get("data") if isinstance(answer, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    out: dict[str, dict[int, float]] = {}
    for sample in result if isinstance(result, list) else ():
        labels = sample.get("metric") if isinstance(sample, dict) else None
        if not isinstance(labels, dict) or labels.get("__name__") != CURVE_GAUGE:
            continue
        trial, step = labels.get("trial"), str(labels.get("step", ""))
        if not (isinstance(trial, str) and trial and step.isascii() and step.isdigit()):
            continue
        if len(step) > STEP_DIGITS:
            continue
        try:
            value = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        out.setdefault(trial, {})[int(step)] = value
    return out


def forged_points(
    pushed: Mapping[str, Mapping[int, float]], latest: Mapping[str, Mapping[str, float]],
    curves: Mapping[str, Curve],
) -> list[Forged]:  # fmt: skip
    """Pushed curve points that disagree with the trial's log at their step. Only where
    the trial's pushed latest evaluation agrees with its log (the push is the current
    run's: an earlier attempt's curve, still in Prometheus until its next scrape, would
    disagree at the steps the retry evaluated again; a disagreeing latest is counted by
    `forged`); at most `CURVE_COMPARED` points of a trial (a trainer pushes about
    `CURVE_POINTS`: more is a forger's, and comparing them all would cost the pass)."""
    out: list[Forged] = []
    for trial, points in sorted(pushed.items()):
        curve, now = curves.get(trial), latest.get(trial, {})
        if curve is None:
            continue
        logged, pushed_now = _logged(curve, now.get("steps")), now.get("validation_loss")
        if logged is None or (pushed_now is not None and not _agree(logged, pushed_now)):
            continue  # the latest is not the log's (yet), or disagrees: `forged` counts it
        losses = {p.step: p.validation_loss for p in curve.points}
        for step, value in sorted(points.items())[:CURVE_COMPARED]:
            found = _disagrees(trial, step, losses.get(step), value)
            if found is not None:
                out.append(found)
    return out


def _logged(curve: Curve, step: float | None) -> float | None:
    """The log's finite validation loss at ``step``; None where it has none."""
    if step is None or not math.isfinite(step):
        return None
    logged = next((p.validation_loss for p in curve.points if p.step == int(step)), None)
    return logged if logged is not None and math.isfinite(logged) else None


def _disagrees(trial: str, step: int, logged: float | None, value: float) -> Forged | None:
    """A pushed value against the log's at one step (a step the log lacks: unknown)."""
    if logged is None or not math.isfinite(logged) or _agree(logged, value):
        return None
    return Forged(trial, step, logged, value)


def _agree(logged: float, value: float) -> bool:
    """A pushed value is the log's (to the agreement of a result's two copies)."""
    return math.isfinite(value) and abs(logged - value) <= AGREE_REL * max(abs(logged), abs(value))


def forged(pushed: Mapping[str, Mapping[str, float]], curves: Mapping[str, Curve]) -> list[Forged]:
    """Pushed latest evaluations (by trial: ``steps`` and ``validation_loss``, as the
    progress group's gauges read) that disagree with the trial's log at that step. A step
    the log does not have (yet) is not compared: it proves nothing either way."""
    out = []
    for trial, values in sorted(pushed.items()):
        curve, step, value = curves.get(trial), values.get("steps"), values.get("validation_loss")
        if curve is None or step is None or value is None:
            continue
        logged = _logged(curve, step)
        found = None if logged is None else _disagrees(trial, int(step), logged, value)
        if found is not None:
            out.append(found)
    return out
