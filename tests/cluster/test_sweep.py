"""A learning-rate sweep on the real control plane: one Job per (trial, learning rate),
labelled with its rate, the rate in each status row, and the winner per cell in status.

Real: the kube-apiserver, the Job controller, the operator and its fit process. The node
agent stands in for a kubelet; the trainer is `benchmarks/scaling_truth.py` (a contract
trainer whose loss is worse away from the known best rate, 0.01 x 16 / model size).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from benchmarks.scaling_truth import random_truth
from tests.cluster.conftest import ROOT, Cluster, Operator, study_doc
from tests.cluster.test_operator import finished, job_creations


def test_a_sweep_runs_each_rate_once_and_keeps_the_best_per_cell(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    doc = study_doc(
        "sweep",
        dataSizes={"values": [1000, 2000, 4000]},
        modelSizes={"values": [16, 64]},
        learningRates={"values": [0.0025, 0.01]},
    )
    trainer = doc["spec"]["trainer"]
    trainer["command"] = [sys.executable, str(ROOT / "benchmarks" / "scaling_truth.py")]
    trainer["env"] += [
        {"name": "SCALING_TRUTH", "value": json.dumps(dataclasses.asdict(random_truth(2)))}
    ]
    op: Operator = operator_factory(namespace)
    op.start()
    cluster.apply(doc, namespace)
    status = finished(cluster, "sweep", namespace)
    assert status["phase"] == "Succeeded", status.get("conditions")
    rows = status["results"]
    assert len(rows) == 12 and {r["learningRate"] for r in rows} == {0.0025, 0.01}
    creations = job_creations(cluster, namespace)
    assert len(creations) == 12 and set(creations.values()) == {1}
    job = cluster.get("job", "sweep-d1000-m64-l0p0025-s0", namespace)
    assert job["metadata"]["labels"]["scalingstudy.io/learning-rate"] == "0.0025"
    winners = {(w["dataSize"], w["modelSize"]): w["learningRate"]
               for w in status["design"]["learningRates"]}  # fmt: skip
    assert winners == {(d, m): 0.01 if m == 16 else 0.0025 for d in (1000, 2000, 4000)
                       for m in (16, 64)}  # fmt: skip
    assert status["fit"]["basedOnResults"] == 12  # succeeded results; the fit used winners
