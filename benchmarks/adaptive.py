"""Adaptive against grid studies on known ground truths (`benchmarks/scaling_truth.py`).

Each study is run by the executors' own decision code (`design.design` and
`scheduling.schedule`, the fits through `results.stage_fit`) on a simulated clock: a
trial takes its truth's cost (parameters x examples) as its duration and returns the
truth's noisy loss, so 30 truths x 2 strategies run in minutes on 2 cores instead of
GPU-days. Printed per strategy: GPU-seconds (median over truths, and relative to the
grid of the same truth), median |beta_g_hat - beta_g| and |beta_p_hat - beta_p|, how
often the 90% intervals of beta_g and beta_p and the prediction at 10x the largest data
size contain the truth, and the median relative error of that prediction.

Goal (issue 15): adaptive spends at most 40% of the grid's GPU-seconds with a median
exponent error at most 1.2x the grid's, and its intervals cover as often.

Usage: python benchmarks/adaptive.py [--truths 30] [--stop-width 0.08] [--seeds 1]
"""

from __future__ import annotations

import argparse
import heapq
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
from scalingstudy.design import design
from scalingstudy.fitting import fit_points
from scalingstudy.fitting.report import FitReport
from scalingstudy.results import fit_options, points_of, stage_fit
from scalingstudy.scheduling import schedule
from scalingstudy.spec import ScalingStudySpec, parse_spec
from scalingstudy.status import DesignStatus, StageFit, TrialRecord


def study_spec(
    strategy: str, stop_width: float | None, seeds: int, parallelism: int
) -> ScalingStudySpec:
    design_spec: dict[str, object] = {"strategy": strategy}
    if strategy == "adaptive" and stop_width:
        design_spec["stopWhen"] = {"betaIntervalWidth": stop_width, "minDataSizes": 5}
    return parse_spec(
        {
            "task": {"name": "simulated"},
            "trainer": {"command": ["simulated"]},
            "dataSizes": {"values": DATA_SIZES},
            "modelSizes": {"values": MODEL_SIZES},
            "seeds": seeds,
            "parallelism": parallelism,
            "design": design_spec,
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


def score(truth: Truth, outcome: Outcome) -> Scores:
    fit = outcome.fit
    lc, ms = fit.learning_curve, fit.model_size
    assert lc is not None
    target = truth.best_loss(10 * DATA_SIZES[-1])
    pred = fit.predictions[0] if fit.predictions else None
    return Scores(
        gpu_seconds=outcome.design.gpu_seconds,
        beta_g_error=abs(lc.beta - truth.beta_g),
        beta_p_error=None if ms is None else abs(ms.beta - truth.beta_p),
        beta_g_covered=bool(
            lc.beta_interval and lc.beta_interval[0] <= truth.beta_g <= lc.beta_interval[1]
        ),
        beta_p_covered=None
        if ms is None or not ms.beta_interval
        else ms.beta_interval[0] <= truth.beta_p <= ms.beta_interval[1],
        prediction_error=None if pred is None else abs(pred.loss / target - 1),
        prediction_covered=None
        if pred is None or not pred.interval
        else pred.interval[0] <= target <= pred.interval[1],
    )


def _median(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else float("nan")


def _share(values: list[bool | None]) -> str:
    kept = [v for v in values if v is not None]
    return f"{sum(kept)}/{len(kept)}" if kept else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truths", type=int, default=30)
    parser.add_argument(
        "--stop-width",
        type=float,
        default=0.0,
        help="adaptive stopWhen.betaIntervalWidth (0: no early stop)",
    )
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--parallelism", type=int, default=4)
    args = parser.parse_args()
    started = time.monotonic()
    rows: dict[str, list[Scores]] = {"grid": [], "adaptive": []}
    ratio: list[float] = []
    trials: dict[str, list[int]] = {"grid": [], "adaptive": []}
    stops: list[str] = []
    for seed in range(args.truths):
        truth = random_truth(seed)
        for strategy in ("grid", "adaptive"):
            spec = study_spec(strategy, args.stop_width, args.seeds, args.parallelism)
            outcome = simulate(truth, spec)
            rows[strategy].append(score(truth, outcome))
            trials[strategy].append(outcome.design.trials_started)
            if strategy == "adaptive":
                stops.append(outcome.design.stop_reason or "-")
        ratio.append(rows["adaptive"][-1].gpu_seconds / rows["grid"][-1].gpu_seconds)
    print(
        f"{args.truths} ground truths, {len(DATA_SIZES)} data sizes x {len(MODEL_SIZES)} model "
        f"sizes x {args.seeds} seed(s), parallelism {args.parallelism}, "
        f"adaptive stop width {args.stop_width or 'none'}"
    )
    print(
        f"{'':10s} {'trials':>7s} {'GPU-s':>9s} {'vs grid':>8s} {'|db_g|':>7s} {'|db_p|':>7s} "
        f"{'cover b_g':>9s} {'cover b_p':>9s} {'pred err':>8s} {'cover pred':>10s}"
    )
    for strategy, scores in rows.items():
        share = 1.0 if strategy == "grid" else statistics.median(ratio)
        print(
            f"{strategy:10s} {statistics.median(trials[strategy]):7.0f} "
            f"{_median([s.gpu_seconds for s in scores]):9.0f} {share:8.1%} "
            f"{_median([s.beta_g_error for s in scores]):7.4f} "
            f"{_median([s.beta_p_error for s in scores]):7.4f} "
            f"{_share([s.beta_g_covered for s in scores]):>9s} "
            f"{_share([s.beta_p_covered for s in scores]):>9s} "
            f"{_median([s.prediction_error for s in scores]):8.2%} "
            f"{_share([s.prediction_covered for s in scores]):>10s}"
        )
    print(
        f"adaptive spend vs grid: median {statistics.median(ratio):.1%}, max {max(ratio):.1%}; "
        f"stop reasons: {', '.join(f'{r} {stops.count(r)}' for r in sorted(set(stops)))}"
    )
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
