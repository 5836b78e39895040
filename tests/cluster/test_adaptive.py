"""An adaptive study on the real control plane: fewer Jobs than its grid, the stop with
its reason in status, and SIGKILLs of the operator mid-study that change nothing.

Real: the kube-apiserver (audit log counts Job creations), the Job controller, the
operator process and its fit child processes, Pushgateway and Prometheus. The node
agent stands in for a kubelet; the trainer is `benchmarks/scaling_truth.py`, a real
process honouring the trainer contract whose losses come from a known ground truth.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.scaling_truth import random_truth
from scalingstudy.spec import parse_spec
from tests.cluster.conftest import ROOT, Cluster, Operator, study_doc
from tests.cluster.test_operator import events, finished, job_creations, kill_at_random_moments
from tests.design_loop import run

TRUTH = random_truth(2)
DESIGN = {
    "strategy": "adaptive",
    "modelSizeWindow": 3,
    "stopWhen": {"betaIntervalWidth": 0.3, "minDataSizes": 4},
}


def adaptive_doc(name: str) -> dict[str, Any]:
    doc = study_doc(
        name,
        dataSizes={"values": [1000, 2000, 4000, 8000, 16000, 32000]},
        modelSizes={"values": [4, 8, 16, 32, 64]},
        parallelism=4,
        design=DESIGN,
    )
    trainer = doc["spec"]["trainer"]
    trainer["command"] = [sys.executable, str(ROOT / "benchmarks" / "scaling_truth.py")]
    trainer["env"] += [
        {"name": "SCALING_TRUTH", "value": json.dumps(dataclasses.asdict(TRUTH))},
        {"name": "TRIAL_SECONDS", "value": "0.5"},
    ]
    return doc


@pytest.mark.slow(50)
def test_adaptive_study_stops_early_with_one_job_per_trial_across_sigkills(
    cluster: Cluster, namespace: str, operator_factory: Any, tmp_path: Path
) -> None:
    doc = adaptive_doc("adaptive")
    spec = parse_spec(doc["spec"])
    # What the design decides from these results, with no cluster and no restarts.
    expected, final, seen = run(
        spec, lambda t: TRUTH.loss(t.model_size, t.data_size, t.seed), study="adaptive"
    )
    assert final.stop_reason == "TargetReached"  # the setup is meaningful
    stop_at = max(w.data_size for w in final.status.windows)
    op: Operator = operator_factory(namespace)
    op.start()
    cluster.apply(doc, namespace)
    kill_at_random_moments(op, random.Random(20261202), 5, up=(1.0, 5.0))
    status = finished(cluster, "adaptive", namespace, timeout=300)
    assert status["phase"] == "Succeeded", status.get("conditions")
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert complete["reason"] == "TargetReached"
    design = status["design"]
    assert design["stopReason"] == "TargetReached"
    assert design["gridTrials"] == 30 and design["trialsSkipped"] > 0
    recorded = {r["trial"] for r in status["results"]}

    # The same decisions as the uninterrupted run: every trial up to the stop is the
    # same; a trial of the stage after it may have finished before the stop (kept) or
    # been cancelled (its Job deleted), never anything else.
    def upto(names: set[str]) -> set[str]:
        return {n for n in names if int(n.split("-d")[1].split("-")[0]) <= stop_at}

    assert upto(recorded) == upto(set(expected))
    ever_planned = set().union(*(d.plan.names for d in seen))
    assert recorded <= ever_planned
    creations = job_creations(cluster, namespace)
    assert set(creations.values()) == {1}, creations
    attempted = job_creations(cluster, namespace, unanswered=True)
    assert recorded <= set(attempted) and len(attempted) < 30
    cancelled = set(attempted) - recorded
    assert not upto(cancelled) and cancelled <= ever_planned
    assert not cluster.items("jobs", namespace, "scalingstudy.io/study=adaptive") or all(
        j["metadata"]["name"] in recorded
        for j in cluster.items("jobs", namespace, "scalingstudy.io/study=adaptive")
    )
    assert [w["dataSize"] for w in design["windows"]] == [w.data_size for w in final.status.windows]
    reasons = collections.Counter(e["reason"] for e in events(cluster, namespace, "adaptive"))
    assert reasons["WindowMoved"] >= 1 and reasons["DesignStopped"] >= 1
    table = cluster.kubectl("get", "scalingstudies", "-n", namespace).stdout
    assert "SPEND" in table and "%" in table.splitlines()[1]
    assert op.starts == 6
