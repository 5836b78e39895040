"""Fit speed on one core: the learning curve with bootstrap, and the joint fit.

Usage: python benchmarks/fit_speed.py
Goals (issue 3): 50 points with 1,000 bootstrap resamples <= 1 s; joint fit on
250 points <= 5 s.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from scalingstudy.fitting import FitOptions, Point, fit_points
from scalingstudy.fitting.joint import JointLaw, fit_joint


def timed(label: str, fn, repeats: int = 3) -> None:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    print(f"{label:58s} best {min(times):6.3f} s   median {np.median(times):6.3f} s")


def main() -> int:
    rng = np.random.default_rng(0)
    m = np.repeat(np.geomspace(1e3, 1e6, 10), 5)
    y = (3 * m**-0.35 + 0.05) * np.exp(0.05 * rng.standard_normal(len(m)))
    seeds = np.tile(np.arange(5), 10)
    trials = [Point(float(a), float(b), seed=str(s)) for a, b, s in zip(m, y, seeds, strict=True)]
    curve = [
        Point(float(a), float(b))
        for a, b in zip(
            np.geomspace(1e3, 1e6, 50), 3 * np.geomspace(1e3, 1e6, 50) ** -0.35 + 0.05, strict=True
        )
    ]
    timed(
        "learning curve, 50 points, 1000 resamples (residual)",
        lambda: fit_points(curve, FitOptions(bootstrap=1000)),
    )
    timed(
        "learning curve, 10 sizes x 5 seeds, 1000 resamples (trials)",
        lambda: fit_points(trials, FitOptions(bootstrap=1000)),
    )
    grid = [
        Point(
            float(d),
            float((2 * d**-0.3 + 0.1) * (1 + 0.3 * np.log(n / (30 * d**0.6)) ** 2)),
            model_size=float(n),
            parameters=float(n),
        )
        for d in 1e3 * 2.0 ** np.arange(7)
        for n in 1e3 * 4.0 ** np.arange(5)
    ]
    timed(
        "grid study, 7 sizes x 5 models, 1000 resamples, beta_p",
        lambda: fit_points(grid, FitOptions(bootstrap=1000, predict_at=(6.4e5,), target_loss=0.2)),
    )
    truth = JointLaw(1.7, 400.0, 400.0, 0.34, 0.28)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 250))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e12), 250))
    loss = truth(n, d) * np.exp(0.01 * rng.standard_normal(250))
    timed("joint fit L(N, D), 250 points (grid + L-BFGS)", lambda: fit_joint(n, d, loss))
    pts = [
        Point(float(a), float(b), parameters=float(c)) for c, a, b in zip(n, d, loss, strict=True)
    ]
    timed(
        "joint fit with 50 bootstrap replicates, 250 points",
        lambda: fit_points(pts, FitOptions(bootstrap=50, joint=True)),
        repeats=1,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
