"""Random small studies of many shapes, for the honesty benchmark and tests.

Each study is a grid of trials (data size x model size x seed, or IsoFLOP budgets)
drawn from a joint law L(N, D) = E + A/N^a + B/D^b bent into one of the shapes real
studies take: clean, noise-free, noisy, flat, rising, saturating, one outlier, three
points, the largest or the smallest model always best, over-fitting, IsoFLOP budgets at
the grid's edges. The fit options ask for everything (joint law, a prediction, a target
that is sometimes below the floor), so every output path has something to render.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scalingstudy.fitting import FitOptions, Point

SHAPES = (
    "clean", "noise-free", "noisy", "flat", "rising", "saturating", "outlier",
    "three-points", "largest-best", "smallest-best", "over-fitting", "isoflop",
)  # fmt: skip


@dataclass(frozen=True)
class Study:
    shape: str
    points: list[Point]
    options: FitOptions


def _parameters(width: float) -> float:
    """A two-layer MLP's parameter count: the knob is a width, not N."""
    return 12 * width + width * width + width + 1


def _loss(shape: str, n: float, d: float, law: tuple[float, ...]) -> float:
    e, a_scale, alpha, b_scale, beta = law
    if shape == "flat":
        return 0.5
    if shape == "rising":
        return 0.2 * d**0.1
    if shape == "saturating":
        return e * (1 + 1e-3 * b_scale / d**beta)
    if shape == "largest-best":
        return e + a_scale * 30 / n**alpha + b_scale / d**beta
    if shape == "smallest-best":
        return e + b_scale / d**beta + 1e-4 * n
    loss = e + a_scale / n**alpha + b_scale / d**beta
    if shape == "over-fitting":
        loss += 0.02 * n / d
    return loss


def _noise(shape: str, rng: np.random.Generator) -> float:
    if shape == "noise-free":
        return 0.0
    if shape == "noisy":
        return 0.15
    return float(rng.choice([0.01, 0.03, 0.06]))


def _grid_points(shape: str, rng: np.random.Generator) -> list[Point]:
    n_data = 3 if shape == "three-points" else int(rng.integers(4, 10))
    data = [int(100 * 2**k) for k in range(n_data)]
    widths = [float(w) for w in sorted(rng.choice([4, 8, 16, 32, 64, 128], int(rng.integers(
        1, 5)), replace=False))]  # fmt: skip
    seeds = int(rng.integers(1, 3))
    bounds = ((0.001, 0.3), (0.5, 5), (0.2, 0.8), (1, 30), (0.2, 1.0))
    law = tuple(float(rng.uniform(lo, hi)) for lo, hi in bounds)
    sigma = _noise(shape, rng)
    points = []
    for d in data:
        for w in widths:
            n = _parameters(w)
            for s in range(seeds):
                loss = _loss(shape, n, d, law) * math.exp(rng.normal(0, sigma))
                points.append(Point(float(d), loss, w, str(s), parameters=n))
    if shape == "outlier":
        d_out = float(rng.choice(data[1:-1] or data))
        points = [p if p.data_size != d_out else Point(p.data_size, p.loss * 3, p.model_size,
                  p.seed, parameters=p.parameters) for p in points]  # fmt: skip
    return points


def _isoflop_points(rng: np.random.Generator) -> list[Point]:
    """Budgets of C = 6 N D, each with model sizes around (or at the edge of) its optimum."""
    budgets = np.geomspace(1e9, 1e12, int(rng.integers(3, 6)))
    sizes = np.geomspace(1e3, 1e6, 7)
    e, a_scale, alpha, b_scale, beta = 1.7, 400.0, 0.34, 410.0, 0.28
    points = []
    for c in budgets:
        for n in sizes:
            d = c / (6 * n)
            if d < 10:
                continue
            loss = (e + a_scale / n**alpha + b_scale / d**beta) * math.exp(rng.normal(0, 0.01))
            points.append(Point(float(d), loss, float(n), "0", parameters=float(n),
                                compute=float(c)))  # fmt: skip
    return points


def random_study(rng: np.random.Generator, bootstrap: int = 60) -> Study:
    shape = str(rng.choice(SHAPES))
    points = _isoflop_points(rng) if shape == "isoflop" else _grid_points(shape, rng)
    largest = max(p.data_size for p in points)
    losses = sorted(p.loss for p in points)
    target = float(losses[0] * rng.choice([0.3, 0.9, 1.5]))
    options = FitOptions(
        bootstrap=bootstrap,
        predict_at=(10 * largest,),
        target_loss=target,
        joint=True,
        random_seed=int(rng.integers(0, 2**31)),
    )
    return Study(shape, points, options)
