"""An IsoFLOP study on the real control plane (issue 28): the operator plans each
budget's trials, records them, and writes the compute-optimal analysis into the status
(camelCase, the same object as `fit --json`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.conftest import Cluster, Operator, study_doc
from tests.cluster.test_operator import finished
from tests.test_isoflop import A_TRUE, LAW


@pytest.mark.slow(35)
def test_an_isoflop_study_reports_its_compute_optimal_exponents_in_status(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    # The law's optimum at these budgets lies between 1e6 and 1e7 (the model size is N).
    sizes = [100_000, 300_000, 1_000_000, 3_000_000, 10_000_000, 30_000_000]
    doc = study_doc(
        "iso", dataSizes={"min": 10**5, "max": 10**10},
        modelSizes={"values": sizes, "parameters": [100 * m for m in sizes]},
        design={"strategy": "isoflop", "computeBudgets": {"values": [6e15, 6e16, 6e17]}},
        parallelism=6,
    )  # fmt: skip
    doc["spec"]["trainer"]["env"].append({"name": "JOINT_LAW", "value": ",".join(map(str, LAW))})
    assert cluster.apply(doc, namespace).returncode == 0
    status = finished(cluster, "iso", namespace, timeout=240)
    assert status["phase"] == "Succeeded", status.get("conditions")
    design = status["design"]
    assert design["strategy"] == "isoflop" and design["trialsStarted"] == design["gridTrials"]
    assert len(status["results"]) == design["gridTrials"] == 18 and not design.get("outOfRange")
    co = status["fit"]["computeOptimal"]
    assert co["method"] == "per-budget" and len(co["budgets"]) == 3
    assert abs(co["modelSizeExponent"] - A_TRUE) < 0.03
    assert abs(co["perBudget"]["a"] - A_TRUE) < 0.03 and abs(co["joint"]["a"] - A_TRUE) < 0.03
    # Every trial spends its budget: C = 6 x parameters x data size, to D's rounding.
    budgets = {6e15, 6e16, 6e17}
    for r in status["results"]:
        spent = 6 * r["parameters"] * r["dataSize"]
        assert min(abs(spent / c - 1) for c in budgets) < 1e-5, r
