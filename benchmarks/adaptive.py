"""Adaptive against grid studies on known ground truths (`benchmarks/scaling_truth.py`).

Each study is run by the executors' own decision code (`design.design` and
`scheduling.schedule`, the fits through `results.stage_fit`) on a simulated clock: a
trial takes its truth's cost (parameters x examples) as its duration and returns the
truth's noisy loss, so 42 truths x 2 strategies run in minutes instead of GPU-days. The
truths: 30 whose best model moves through the middle of the grid, and 12 whose best
model grows as D^0.4-0.8 into the grid's largest model size (the expensive corner).

Printed per strategy: |beta_g_hat - beta_g| (median, 90th percentile) and how often its
90% interval covers beta_g; the relative error of the loss predicted at the largest
listed data size against the truth there (the best listed model's loss; an adaptive
study that stopped early predicts it, a grid fits it) and at 10x that size, and how
often their 90% intervals cover; then the adaptive design's compute against the grid's
(sum of parameters x examples of the trials it ran) over all truths: median, 90th
percentile, max, and on how many it is at most 40%.

Goal (issue 28): at most 40% of the grid's compute on at least 90% of the truths, with
beta_g and the loss at the largest data size as accurate as the grid's and intervals
that cover as often.

Usage: python benchmarks/adaptive.py [--truths 30] [--top-truths 12] [--stop-width 0.08]
       [--share 1] [--seeds 1] [--jobs 2]
"""

from __future__ import annotations

import argparse
import functools
import heapq
import math
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scaling_truth import DATA_SIZES, MODEL_SIZES, Truth, parameters, random_truth
from scalingstudy.contract import TrialResult
from scalingstudy.fitting import fit_points
from scalingstudy.fitting.report import FitReport
from scalingstudy.planning.design import design
from scalingstudy.planning.scheduling import schedule
from scalingstudy.results import fit_options, points_of, stage_fit
from scalingstudy.spec import ScalingStudySpec, parse_spec
from scalingstudy.status import DesignStatus, StageFit, TrialRecord


def study_spec(
    strategy: str, stop_width: float | None, seeds: int, parallelism: int, share: float | None
) -> ScalingStudySpec:
    design_spec: dict[str, object] = {"strategy": strategy}
    if strategy == "adaptive" and stop_width:
        design_spec["stopWhen"] = {"betaIntervalWidth": stop_width, "minDataSizes": 5}
    if strategy == "adaptive" and share is not None:
        design_spec["computeShare"] = share
    return parse_spec(
        {
            "task": {"name": "simulated"},
            "trainer": {"command": ["simulated"]},
            "dataSizes": {"values": DATA_SIZES},
            "modelSizes": {"values": MODEL_SIZES},
            "seeds": seeds,
            "parallelism": parallelism,
            "design": design_spec,
            "fit": {"predictAt": [DATA_SIZES[-1], 10 * DATA_SIZES[-1]]},
        }
    )


@dataclass
class Outcome:
    records: dict[str, TrialRecord]
    design: DesignStatus
    fit: FitReport


def simulate(truth: Truth, spec: ScalingStudySpec) -> Outcome:
    """One study on the simulated clock, decided exactly as the executors decide."""
    records: dict[str, TrialRecord] = {}
    running: dict[str, tuple[float, object]] = {}
    ends: list[tuple[float, str]] = []
    fits: dict[int, StageFit] = {}
    clock = 0.0
    while True:
        chosen = design("sim", spec, records, running.keys(), fits)
        if chosen.fit_needed is not None:
            fits[chosen.fit_needed] = stage_fit(chosen.prefix, spec, chosen.fit_needed, fit_points)
            continue
        for name in [n for n in running if n not in chosen.plan]:  # cancelled by a stop
            del running[name]
        ends = [(t, n) for t, n in ends if n in running]
        heapq.heapify(ends)
        decision = schedule(chosen.plan, records, running.keys(), spec.parallelism, 0)
        if decision.finished and not chosen.more:
            break
        for trial in decision.start:
            duration = truth.cost(trial.model_size, trial.data_size)
            running[trial.name] = (duration, trial)
            heapq.heappush(ends, (clock + duration, trial.name))
        if not ends:
            raise RuntimeError("nothing runs and the design is not finished")
        clock, name = heapq.heappop(ends)
        duration, trial = running.pop(name)
        result = TrialResult(
            loss=truth.loss(trial.model_size, trial.data_size, trial.seed),  # type: ignore[attr-defined]
            parameters=parameters(trial.model_size),  # type: ignore[attr-defined]
        )
        records[name] = TrialRecord.succeeded(trial, result, duration)  # type: ignore[arg-type]
    relevant = list(chosen.plan.relevant(records).values())
    return Outcome(records, chosen.status, fit_points(points_of(relevant), fit_options(spec)))


@dataclass
class Scores:
    gpu_seconds: float
    beta_g_error: float
    beta_p_error: float | None
    beta_g_covered: bool
    beta_p_covered: bool | None
    prediction_error: float | None
    prediction_covered: bool | None
    largest_error: float | None
    largest_covered: bool | None


def score(truth: Truth, outcome: Outcome) -> Scores:
    fit = outcome.fit
    lc, ms = fit.learning_curve, fit.model_size
    assert lc is not None
    target = truth.best_loss(10 * DATA_SIZES[-1])
    largest = fit.predictions[0] if fit.predictions else None
    pred = fit.predictions[1] if len(fit.predictions) > 1 else None
    # The held-out truth at the largest listed data size: the best listed model there.
    held_out = min(truth.mean_loss(parameters(m), DATA_SIZES[-1]) for m in MODEL_SIZES)
    return Scores(
        gpu_seconds=outcome.design.gpu_seconds,
        beta_g_error=abs(lc.beta - truth.beta_g),
        beta_p_error=None if ms is None else abs(ms.beta - truth.beta_p),
        beta_g_covered=bool(lc.beta_interval and _inside(truth.beta_g, lc.beta_interval)),
        beta_p_covered=None
        if ms is None or not ms.beta_interval
        else _inside(truth.beta_p, ms.beta_interval),
        prediction_error=None if pred is None else abs(pred.loss / target - 1),
        prediction_covered=None
        if pred is None or not pred.interval
        else _inside(target, pred.interval),
        largest_error=None if largest is None else abs(largest.loss / held_out - 1),
        largest_covered=None
        if largest is None or not largest.interval
        else _inside(held_out, largest.interval),
    )


def _inside(value: float, interval: tuple[float | None, float | None]) -> bool:
    lo, hi = interval
    return (lo is None or lo <= value) and (hi is None or value <= hi)


def _median(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else float("nan")


def _p90(values: list[float | None]) -> float:
    kept = sorted(v for v in values if v is not None)
    return kept[min(len(kept) - 1, math.ceil(0.9 * len(kept)) - 1)] if kept else float("nan")


def _share(values: list[bool | None]) -> str:
    kept = [v for v in values if v is not None]
    return f"{sum(kept)}/{len(kept)}" if kept else "-"


def truths(middle: int, top: int) -> list[Truth]:
    """``middle`` truths whose best model stays inside the grid, ``top`` whose best
    reaches its largest model size (seeds apart, so adding some changes none)."""
    return [random_truth(s) for s in range(middle)] + [
        random_truth(1000 + s, reach_top=True) for s in range(top)
    ]


def both(
    truth: Truth, stop_width: float, seeds: int, parallelism: int, share: float | None
) -> dict[str, tuple[Scores, int, str]]:
    """One truth studied by the grid and by the adaptive design: (scores, trials started,
    stop reason) of each."""
    out = {}
    for strategy in ("grid", "adaptive"):
        outcome = simulate(truth, study_spec(strategy, stop_width, seeds, parallelism, share))
        out[strategy] = (
            score(truth, outcome),
            outcome.design.trials_started,
            outcome.design.stop_reason or "-",
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truths", type=int, default=30)
    parser.add_argument("--top-truths", type=int, default=12)
    parser.add_argument(
        "--stop-width",
        type=float,
        default=0.0,
        help="adaptive stopWhen.betaIntervalWidth (0: the default stop rule)",
    )
    parser.add_argument(
        "--share", type=float, help="adaptive design.computeShare (default: its default; 1: none)"
    )
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    args = parser.parse_args()
    started = time.monotonic()
    cases = truths(args.truths, args.top_truths)
    run = functools.partial(
        both, stop_width=args.stop_width, seeds=args.seeds, parallelism=args.parallelism,
        share=args.share,
    )  # fmt: skip
    with multiprocessing.Pool(args.jobs) as pool:
        outcomes = pool.map(run, cases)
    rows = {s: [o[s][0] for o in outcomes] for s in ("grid", "adaptive")}
    trials = {s: [o[s][1] for o in outcomes] for s in ("grid", "adaptive")}
    stops = [o["adaptive"][2] for o in outcomes]
    ratio = [o["adaptive"][0].gpu_seconds / o["grid"][0].gpu_seconds for o in outcomes]
    print(
        f"{len(cases)} ground truths ({args.top_truths} reaching the top model size), "
        f"{len(DATA_SIZES)} data sizes x {len(MODEL_SIZES)} model sizes x {args.seeds} "
        f"seed(s), parallelism {args.parallelism}, adaptive: "
        + f"computeShare {args.share or 'default'}, stop width {args.stop_width or 'none'}"
    )
    print(
        f"{'':10s} {'trials':>6s} {'|db_g| med/p90':>15s} {'cover b_g':>9s} "
        f"{'err@Dmax med/p90':>17s} {'cover@Dmax':>10s} {'err@10x':>7s} {'cover@10x':>9s}"
    )
    for strategy, scores in rows.items():
        g = [s.beta_g_error for s in scores]
        e = [s.largest_error for s in scores]
        print(
            f"{strategy:10s} {statistics.median(trials[strategy]):6.0f} "
            f"{_median(g):7.4f}/{_p90(g):.4f} {_share([s.beta_g_covered for s in scores]):>9s} "
            f"{_median(e):8.2%}/{_p90(e):.2%} "
            f"{_share([s.largest_covered for s in scores]):>10s} "
            f"{_median([s.prediction_error for s in scores]):7.2%} "
            f"{_share([s.prediction_covered for s in scores]):>9s}"
        )
    top = ratio[args.truths :]
    print(
        f"adaptive compute vs grid: median {statistics.median(ratio):.1%}, "
        f"p90 {_p90(ratio):.1%}, max {max(ratio):.1%}; at most 40% on "
        f"{sum(r <= 0.4 for r in ratio)}/{len(ratio)} truths"
        + (
            f" (top-reaching: median {statistics.median(top):.1%}, max {max(top):.1%})"
            if top
            else ""
        )
    )
    print(f"stop reasons: {', '.join(f'{r} {stops.count(r)}' for r in sorted(set(stops)))}")
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
