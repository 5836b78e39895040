"""The executors' decision loop without processes or a cluster: the design and the
trials it starts, finished one at a time in a chosen order (tests of the design, and
the cluster test's expectation)."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.scaling_truth import parameters
from scalingstudy.contract import TrialResult
from scalingstudy.fitting import fit_points
from scalingstudy.planning.design import Design, design
from scalingstudy.planning.plan import Trial
from scalingstudy.results import stage_fit
from scalingstudy.spec import ScalingStudySpec
from scalingstudy.status import StageFit, TrialRecord


def record(trial: Trial, loss: float, duration: float = 1.0) -> TrialRecord:
    return TrialRecord.succeeded(
        trial, TrialResult(loss=loss, parameters=parameters(trial.model_size)), duration
    )


Order = Callable[[list[Trial]], list[Trial]]
#: The last run's decisions with what was known at each: (design, records, running).
moments: list[tuple[Design, dict[str, TrialRecord], set[str]]] = []


def run(
    spec: ScalingStudySpec,
    loss: Callable[[Trial], float],
    order: Order = lambda ts: ts,
    cost: Callable[[Trial], float] = lambda t: 1.0,
    parallelism: int = 4,
    study: str = "s",
) -> tuple[dict[str, TrialRecord], Design, list[Design]]:
    """The executors' loop without processes: start what the design allows (up to
    ``parallelism`` running), finish one running trial chosen by ``order``."""
    records: dict[str, TrialRecord] = {}
    running: dict[str, Trial] = {}
    fits: dict[int, StageFit] = {}
    seen: list[Design] = []
    moments.clear()
    while True:
        chosen = design(study, spec, records, running.keys(), fits)
        if chosen.fit_needed is not None:
            fits[chosen.fit_needed] = stage_fit(chosen.prefix, spec, chosen.fit_needed, fit_points)
            continue
        seen.append(chosen)
        moments.append((chosen, dict(records), set(running)))
        for name in [n for n in running if n not in chosen.plan]:
            del running[name]
        waiting = [t for t in chosen.plan if t.name not in records and t.name not in running]
        for t in waiting[: max(parallelism - len(running), 0)]:
            running[t.name] = t
        if not running:
            assert not chosen.more, "the design waits but nothing runs"
            return records, chosen, seen
        done = order(list(running.values()))[0]
        del running[done.name]
        records[done.name] = record(done, loss(done), cost(done))
