"""A custom trainer for runner tests: honours the trainer contract, trains nothing.

It is a real program run as a real subprocess (the way a user's own image runs);
only the learning is replaced by a known curve, so tests run in milliseconds and
know the answer (`expected_loss`). FAIL_TRIALS lists trials that fail (* for all);
CALLS_LOG records every start.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from scalingstudy_trainer.report import report_result

#: "E,A,alpha,B,beta": the loss is L(N, D) = E + A / N^alpha + B / D^beta with N the model
#: size, so an IsoFLOP study knows its compute-optimal exponent, beta / (alpha + beta).
JOINT_LAW = "JOINT_LAW"


def expected_loss(data: int, model: int) -> float:
    law = os.environ.get(JOINT_LAW)
    if law:
        e, a, alpha, b, beta = (float(x) for x in law.split(","))
        return e + a / model**alpha + b / data**beta
    best = 4 * (data / 100) ** 0.5
    return (2.0 * data**-0.4 + 0.01) * (1 + 0.05 * abs(math.log(model / best)))


def main() -> int:
    trial = os.environ["SCALINGSTUDY_TRIAL"]
    data = int(os.environ["SCALINGSTUDY_DATA_SIZE"])
    model = int(os.environ["SCALINGSTUDY_MODEL_SIZE"])
    log = os.environ.get("CALLS_LOG")
    if log:
        with Path(log).open("a") as handle:
            handle.write(trial + "\n")
    time.sleep(float(os.environ.get("TRIAL_SECONDS", "0")))
    failing = os.environ.get("FAIL_TRIALS", "").split(",")
    if trial in failing or "*" in failing:
        print("loading data...", file=sys.stderr)
        print("RuntimeError: CUDA out of memory (pretend)", file=sys.stderr)
        return 3
    loss = expected_loss(data, model)
    result = {
        "validation_loss": loss,
        "parameters": model * 100,
        "train_loss": loss * 0.9,
        "steps": data,
        "samples_seen": data * 10,
    }
    # The helper a user's own trainer imports: result file, and the Pushgateway if given
    # (pushing is optional in the contract: NO_PUSH_TRIALS lists trials that do not).
    env = dict(os.environ)
    if trial in os.environ.get("NO_PUSH_TRIALS", "").split(","):
        env["SCALINGSTUDY_PUSHGATEWAY"] = ""
    report_result(result, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
