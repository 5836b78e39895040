"""A custom trainer with known training curves, for the control-plane pruning test.

It trains nothing: every evaluation's loss is a known function of the fraction of its
step budget done and its learning rate, printed through the SDK (`Trial.progress`: a
JSON line in the pod's log, pushed as live progress when a Pushgateway is set), one
evaluation every EVAL_SECONDS. The rates of one slot cross as the issue describes:
- below 0.05, a slow starter that wins (worst at first, best at the end);
- from 0.05 to 0.5, a fast starter that ends worse;
- from 0.5, a trial that is clearly worse all along (pruning must stop it).
A trial named in NO_PROGRESS_PUSH (comma-separated) pushes no progress (the test
pushes a forged curve for it instead; its log stays the truth).
"""

from __future__ import annotations

import os
import time

from scalingstudy_sdk import Trial

STEPS = 400
EVERY = 10


def loss(rate: float, fraction: float, data_size: int) -> float:
    scale = (data_size / 100) ** -0.3
    if rate < 0.05:
        return scale * (0.8 + 2.0 * (1 + 20 * fraction) ** -0.5)
    if rate < 0.5:
        return scale * (1.3 + 0.7 / (1 + 50 * fraction))
    return scale * (3.0 + 0.5 / (1 + 10 * fraction))


def main() -> None:
    env = dict(os.environ)
    if env.get("SCALINGSTUDY_TRIAL") in env.get("NO_PROGRESS_PUSH", "").split(","):
        env["SCALINGSTUDY_PUSHGATEWAY"] = ""
    trial = Trial.from_env(env)
    rate = trial.learning_rate or 0.0
    wait = float(env.get("EVAL_SECONDS", "1.5"))
    best = float("inf")
    for step in range(EVERY, STEPS + 1, EVERY):
        time.sleep(wait)
        value = loss(rate, step / STEPS, trial.data_size)
        best = min(best, value)
        trial.progress(step=step, validation_loss=value, train_loss=value * 0.9,
                       samples_seen=step * 32, step_budget=STEPS)  # fmt: skip
    trial.report(validation_loss=best, parameters=trial.model_size * 100, steps=STEPS)


if __name__ == "__main__":
    main()
