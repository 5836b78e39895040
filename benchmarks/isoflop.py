"""Compute-optimal exponents from IsoFLOP trials, on truths with a known answer and on the
shared Chinchilla points.

Synthetic truths are Chinchilla-like: L = E + A / N^alpha + B / D^beta with alpha, beta
drawn in [0.25, 0.45], so the true a = beta / (alpha + beta) of N* ~ C^a is known; 4-6
budgets over 2 decades, 5-7 model sizes per budget spaced a factor 2-2.5 apart around
the budget's optimum (offset at random by up to half a step), D = C / (6 N), and 1-3%
multiplicative noise. Prints, for both methods (per budget, approach 2; joint law,
approach 3), the median and 90th percentile of |a_hat - a| and how often the nominal 90%
interval holds the true a. Then both methods on ../shared/data/chinchilla (Epoch AI's
extraction of Hoffmann et al.'s Figure 4; published a about 0.46-0.51).

Usage: python benchmarks/isoflop.py [--truths 40] [--bootstrap 200] [--joint-bootstrap 50]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from scalingstudy.fitting.compute_optimal import IsoPoint, compute_optimal

K = 6.0
NOISE_SCALE = 1.0
CHINCHILLA = Path(__file__).resolve().parents[2] / "shared/data/chinchilla/svg_extracted_data.csv"


def truth_points(rng: np.random.Generator) -> tuple[float, list[IsoPoint]]:
    alpha, beta = rng.uniform(0.25, 0.45, 2)
    e, a_coef, b_coef = 1.7, rng.uniform(200, 600), rng.uniform(200, 2000)
    noise = rng.uniform(0.01, 0.03) * NOISE_SCALE
    budgets = np.logspace(18, 20, int(rng.integers(4, 7)))
    sizes = int(rng.integers(5, 8))
    step = rng.uniform(np.log(2.0), np.log(2.5))
    # The true optimum: G = (alpha A / (beta B))^(1/(alpha+beta)), N* = G (C/6)^(beta/(a+b)).
    g = (alpha * a_coef / (beta * b_coef)) ** (1 / (alpha + beta))
    points = []
    for c in budgets:
        n_opt = g * (c / K) ** (beta / (alpha + beta))
        offset = rng.uniform(-0.5, 0.5) * step
        log_n = np.log(n_opt) + offset + step * (np.arange(sizes) - (sizes - 1) / 2)
        for n in np.exp(log_n):
            d = c / (K * n)
            loss = (e + a_coef / n**alpha + b_coef / d**beta) * np.exp(rng.normal(0, noise))
            points.append(IsoPoint(float(c), float(n), float(loss), float(d)))
    return float(beta / (alpha + beta)), points


def summarise(name: str, errors: list[float], covered: list[bool], missing: int) -> None:
    e = np.abs(errors)
    print(f"  {name:<11} median |error| {np.median(e):.4f}   90th pct "
          f"{np.quantile(e, 0.9):.4f}   coverage of 90% interval {np.mean(covered):.2f}"
          f"   no estimate {missing}")  # fmt: skip


def covers(interval: list[float | None], value: float) -> bool:
    lo, hi = interval
    return (lo is None or lo <= value) and (hi is None or value <= hi)


def synthetic(truths: int, bootstrap: int, joint: int) -> None:
    rng = np.random.default_rng(2026)
    results: dict[str, tuple[list[float], list[bool], list[int]]] = {
        "per-budget": ([], [], [0]), "joint": ([], [], [0])}  # fmt: skip
    started = time.perf_counter()
    for _ in range(truths):
        a_true, points = truth_points(rng)
        report = compute_optimal(points, K, 0.9, bootstrap, 0, [], joint_replicates=joint)
        assert report is not None
        for method, pair in (("per-budget", report.per_budget), ("joint", report.joint)):
            errors, covered, missing = results[method]
            if pair is None:
                missing[0] += 1
                continue
            errors.append(pair.a - a_true)
            covered.append(covers(pair.a_interval, a_true))
    print(f"synthetic Chinchilla-like truths: {truths}, {bootstrap} resamples ({joint} for "
          "the joint law), "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    for method, (errors, covered, missing) in results.items():
        summarise(method, errors, covered, missing[0])


def chinchilla(bootstrap: int, joint: int) -> None:
    if not CHINCHILLA.exists():
        print(f"no {CHINCHILLA}: skipped")
        return
    rows = list(csv.DictReader(CHINCHILLA.open()))
    points = [
        IsoPoint(c, n, float(r["loss"]), c / (K * n))
        for r in rows
        for c, n in [(float(r["Training FLOP"]), float(r["Model Size"]))]
    ]
    warnings: list[str] = []
    report = compute_optimal(points, K, 0.9, bootstrap, 0, warnings, joint_replicates=joint)
    assert report is not None
    print(f"Chinchilla points ({len(points)}; published a about 0.46-0.51, Epoch 2024):")
    for name, pair in (("per-budget", report.per_budget), ("joint", report.joint)):
        if pair is None:
            print(f"  {name:<11} no estimate")
            continue
        lo, hi = pair.a_interval
        print(f"  {name:<11} a = {pair.a:.3f} [{lo if lo is None else round(lo, 3)}, "
              f"{hi if hi is None else round(hi, 3)}]   b = {pair.b:.3f}")  # fmt: skip
    print(f"  budgets: {len(report.budgets)}, at the edge: "
          f"{sum(b.at_edge is not None for b in report.budgets)}")  # fmt: skip
    for w in warnings:
        print(f"  warning: {w}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truths", type=int, default=40)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--joint-bootstrap", type=int, default=50)
    args = parser.parse_args()
    synthetic(args.truths, args.bootstrap, args.joint_bootstrap)
    chinchilla(args.bootstrap, args.joint_bootstrap)


if __name__ == "__main__":
    main()
