"""A known scaling ground truth, and a trainer program that honours the trainer contract
with it (for `benchmarks/adaptive.py` and the adaptive tests).

    L(P, D) = E + A P^-a + B D^-b + C (P / D^k)^c      P = 16 m^2 parameters

The last term penalises models too large for their data (they overfit), so at each data
size there is a best parameter count, P*(D) = const * D^beta_p with beta_p = k c / (a + c).
With b = a beta_p, the best model's loss is E + K D^-b exactly: beta_g = -b. A trial's
cost is P * D (a fixed number of epochs), reported as its duration in the benchmark's
simulated clock.

As a program: SCALING_TRUTH (JSON of `Truth`) picks the truth, TRIAL_SECONDS how long a
trial sleeps (TRIAL_SECONDS_AT, JSON {data size: seconds}, for some sizes); the loss
carries the truth's seeded noise, and in a learning-rate sweep
(SCALINGSTUDY_LEARNING_RATE) a penalty away from the best rate of the model size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass

DATA_SIZES = [1000 * 2**k for k in range(8)]
MODEL_SIZES = [4 * 2**j for j in range(8)]


def parameters(model_size: int) -> int:
    return 16 * model_size * model_size


@dataclass(frozen=True)
class Truth:
    a: float
    c: float
    kappa: float
    A: float
    B: float
    C: float
    E: float
    noise: float
    seed: int

    @property
    def beta_p(self) -> float:
        return self.kappa * self.c / (self.a + self.c)

    @property
    def beta_g(self) -> float:
        return -self.a * self.beta_p

    def mean_loss(self, params: float, data: float) -> float:
        return (
            self.E
            + self.A * params**-self.a
            + self.B * data**self.beta_g
            + self.C * (params / data**self.kappa) ** self.c
        )

    def best_parameters(self, data: float) -> float:
        ratio = self.a * self.A / (self.c * self.C)
        return (ratio * data ** (self.kappa * self.c)) ** (1.0 / (self.a + self.c))

    def best_loss(self, data: float) -> float:
        return self.mean_loss(self.best_parameters(data), data)

    def loss(self, model_size: int, data: int, seed: int) -> float:
        """One trial's measured loss: the mean times seeded log-normal noise."""
        key = f"{self.seed}/{model_size}/{data}/{seed}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
        return self.mean_loss(parameters(model_size), data) * math.exp(rng.gauss(0, self.noise))

    def learning_rate_penalty(self, model_size: int, learning_rate: float | None) -> float:
        """The loss factor of training at ``learning_rate`` (None: at the best one): the best
        is 0.01 x 16 / model size, and each factor 2 away costs about 10%."""
        if learning_rate is None:
            return 1.0
        best = 0.01 * 16 / model_size
        return 1.0 + 0.2 * math.log2(learning_rate / best) ** 2

    def cost(self, model_size: int, data: int) -> float:
        """GPU-seconds of a trial (1e-6 s per parameter per example)."""
        return 1e-6 * parameters(model_size) * data


def random_truth(seed: int, reach_top: bool = False) -> Truth:
    """A truth whose best model moves through the middle of MODEL_SIZES over DATA_SIZES
    (``reach_top``: grows as D^0.4-0.8 and reaches the largest model size at the largest
    data size, where a window following it is the most expensive corner of the grid)."""
    rng = random.Random(seed)
    beta_p = rng.uniform(0.4, 0.8) if reach_top else rng.uniform(0.4, 0.9)
    a = rng.uniform(0.25, 0.5)
    c = rng.uniform(0.4, 1.0)
    kappa = beta_p * (a + c) / c
    # The best model's grid index at the largest data size: in [4, 6.3] of 0..7, or
    # [6.6, 7.2] (at the top, or just past it) when reaching the top.
    index = rng.uniform(6.6, 7.2) if reach_top else rng.uniform(4.0, 6.3)
    p_star = parameters(MODEL_SIZES[0]) * 4.0**index
    d_max = DATA_SIZES[-1]
    # P* = (a A / (c C) * D^(kappa c))^(1/(a+c)) with A = 1: solve for C.
    big_a = 1.0
    big_c = a * big_a * d_max ** (kappa * c) / (c * p_star ** (a + c))
    reducible = big_a * p_star**-a + big_c * (p_star / d_max**kappa) ** c
    big_b = reducible * d_max ** (a * beta_p)  # the data term as large as the model terms
    base = Truth(a, c, kappa, big_a, big_b, big_c, 0.0, rng.uniform(0.005, 0.02), seed)
    big_e = rng.uniform(0.0, 0.3) * base.best_loss(d_max)
    scale = 3.0 / (base.best_loss(DATA_SIZES[0]) + big_e)
    return dataclasses.replace(
        base, A=big_a * scale, B=big_b * scale, C=big_c * scale, E=big_e * scale
    )


def main() -> int:
    from scalingstudy_trainer.report import report_result

    truth = Truth(**json.loads(os.environ["SCALING_TRUTH"]))
    data = int(os.environ["SCALINGSTUDY_DATA_SIZE"])
    model = int(os.environ["SCALINGSTUDY_MODEL_SIZE"])
    seed = int(os.environ["SCALINGSTUDY_SEED"])
    per_size = json.loads(os.environ.get("TRIAL_SECONDS_AT", "{}"))
    time.sleep(float(per_size.get(str(data), os.environ.get("TRIAL_SECONDS", "0"))))
    rate = os.environ.get("SCALINGSTUDY_LEARNING_RATE")
    loss = truth.loss(model, data, seed) * truth.learning_rate_penalty(
        model, float(rate) if rate else None
    )
    report_result(
        {"validation_loss": loss, "parameters": parameters(model), "steps": data},
        dict(os.environ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
