"""A trainer for the dashboard's data test (test_dashboard_data.py): a real process that
uses the SDK's Trial as a bring-your-own trainer does (its evaluations through
``Trial.progress``, pushed to the Pushgateway as the trial's live progress; its result
through ``Trial.report``), with the contract trainer's known curve instead of learning, so
that the study takes seconds and its fit is known. Each trial's loss is off the curve by a
fixed pseudo-random factor within NOISE (default 2%) of its name, as a real trial's is by
its seed: without any, the bootstrap has nothing to resample and beta_p is not measured.

EVALS evaluations (default 4), EVAL_SECONDS apart (default 0.5): the loss falls to the
known final one."""

from __future__ import annotations

import hashlib
import os
import time

from scalingstudy_sdk import Trial
from tests.contract_trainer import expected_loss


def noise(trial: str) -> float:
    """A factor in [1 - NOISE, 1 + NOISE], the same for every run of ``trial``."""
    unit = int(hashlib.sha256(trial.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return 1 + float(os.environ.get("NOISE", "0.02")) * (2 * unit - 1)


def main() -> None:
    trial = Trial.from_env_or_exit()
    final = expected_loss(trial.data_size, trial.model_size) * noise(trial.name)
    evals = int(os.environ.get("EVALS", "4"))
    pause = float(os.environ.get("EVAL_SECONDS", "0.5"))
    steps_per_eval = 100
    for k in range(1, evals + 1):
        time.sleep(pause)
        trial.progress(
            step=k * steps_per_eval,
            validation_loss=final * (1 + (evals - k) / evals),
            samples_seen=k * steps_per_eval * 10,
            step_budget=evals * steps_per_eval,
        )
    trial.report(
        final,
        parameters=trial.model_size * 100,
        train_loss=final * 0.9,
        steps=evals * steps_per_eval,
        samples_seen=evals * steps_per_eval * 10,
    )


if __name__ == "__main__":
    main()
