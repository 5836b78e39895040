"""A trial is what it ran, on the real control plane: editing a study's learning rates
(insert, reorder, remove) creates Jobs only for new values, never a second Job of a value
that ran, and every status row holds the result of its own rate.

Real: the kube-apiserver, the Job controller, the operator and its fit process; the node
agent stands in for a kubelet; the trainer is `benchmarks/scaling_truth.py`, whose loss
names the rate it trained at (a penalty away from the model size's best rate).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import pytest

from benchmarks.scaling_truth import random_truth
from scalingstudy.planning.plan import trial_name
from tests.cluster.conftest import ROOT, Cluster, Operator, study_doc, wait_until
from tests.cluster.test_operator import job_creations, phase_is

TRUTH = random_truth(2)
DATA, MODELS = [1000, 2000, 4000], [16, 64]


def _doc(rates: list[float]) -> dict[str, Any]:
    doc = study_doc("ident", dataSizes={"values": DATA}, modelSizes={"values": MODELS},
                    learningRates={"values": rates})  # fmt: skip
    trainer = doc["spec"]["trainer"]
    trainer["command"] = [sys.executable, str(ROOT / "benchmarks" / "scaling_truth.py")]
    trainer["env"] += [{"name": "SCALING_TRUTH", "value": json.dumps(dataclasses.asdict(TRUTH))}]
    return doc


def _settled(cluster: Cluster, namespace: str, rates: list[float]) -> dict[str, Any]:
    """The status once the current generation is observed and Succeeded with every trial
    of ``rates`` recorded."""
    wanted = {trial_name("ident", d, m, 0, r) for d in DATA for m in MODELS for r in rates}

    def done() -> dict[str, Any] | None:
        obj = phase_is(cluster, "ident", namespace, "Succeeded")
        if not obj or obj["status"].get("observedGeneration") != obj["metadata"]["generation"]:
            return None
        rows = {r["trial"] for r in obj["status"].get("results", [])}
        return obj if wanted <= rows else None

    return dict(wait_until(f"rates {rates} settled", done, timeout=240)["status"])


def _check_rows(status: dict[str, Any], rates: list[float]) -> None:
    """Every listed value's row holds the loss of its own rate."""
    rows = {r["trial"]: r for r in status["results"]}
    for d in DATA:
        for m in MODELS:
            for rate in rates:
                row = rows[trial_name("ident", d, m, 0, rate)]
                loss = TRUTH.loss(m, d, 0) * TRUTH.learning_rate_penalty(m, rate)
                assert row["learningRate"] == rate
                assert row["loss"] == pytest.approx(loss, rel=1e-9), row


@pytest.mark.slow(150)
def test_editing_the_rates_creates_jobs_only_for_new_values(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    op: Operator = operator_factory(namespace)
    op.start()
    cluster.apply(_doc([0.0025, 0.01]), namespace)
    _check_rows(_settled(cluster, namespace, [0.0025, 0.01]), [0.0025, 0.01])
    assert sum(job_creations(cluster, namespace).values()) == 12
    # Insert at the front: six new Jobs, all of 0.001 (they used to be taken for l0's).
    cluster.apply(_doc([0.001, 0.0025, 0.01]), namespace)
    status = _settled(cluster, namespace, [0.001, 0.0025, 0.01])
    _check_rows(status, [0.001, 0.0025, 0.01])
    creations = job_creations(cluster, namespace)
    named = {trial_name("ident", d, m, 0, r): r for d in DATA for m in MODELS
             for r in (0.001, 0.0025, 0.01)}  # fmt: skip
    assert creations.keys() == named.keys() and set(creations.values()) == {1}
    for name, rate in named.items():
        job = cluster.get("job", name, namespace)
        assert float(job["metadata"]["labels"]["scalingstudy.io/learning-rate"]) == rate
    # Reorder, then remove: no Job created, the removed value's results out of the fit.
    cluster.apply(_doc([0.01, 0.001, 0.0025]), namespace)
    _settled(cluster, namespace, [0.01, 0.001, 0.0025])
    cluster.apply(_doc([0.001, 0.0025]), namespace)
    status = _settled(cluster, namespace, [0.001, 0.0025])
    _check_rows(status, [0.001, 0.0025])
    assert status["fit"]["basedOnResults"] == 12
    assert len(job_creations(cluster, namespace)) == 18
    # Add a slow value, then remove it while its trials run: their Jobs are deleted, and
    # the time they ran is spent (status.design.cancelled, by Job uid, once each).
    spent = status["design"]["deviceSeconds"]
    slow = _doc([0.001, 0.0025, 0.0005])
    slow["spec"]["trainer"]["env"] += [{"name": "TRIAL_SECONDS", "value": "120"}]
    cluster.apply(slow, namespace)

    def running() -> dict[str, str]:
        jobs = [j for j in cluster.items("jobs", namespace)
                if j["metadata"]["labels"].get("scalingstudy.io/learning-rate") == "0.0005"
                and j["status"].get("startTime") and j["status"].get("active")]  # fmt: skip
        return {j["metadata"]["name"]: j["metadata"]["uid"] for j in jobs}

    started = wait_until("trials of the slow value running", running, timeout=60)
    cluster.apply(_doc([0.001, 0.0025]), namespace)
    status = _settled(cluster, namespace, [0.001, 0.0025])
    wait_until("the slow Jobs deleted", lambda: not running(), timeout=60)

    def cancelled_runs() -> list[dict[str, Any]] | None:
        return _status_of(cluster, namespace)["design"].get("cancelled") or None

    cancelled = wait_until("the cancelled runs in status", cancelled_runs)
    assert {c["jobUid"] for c in cancelled} >= set(started.values())
    assert len({c["jobUid"] for c in cancelled}) == len(cancelled)  # each run once
    assert all("-l0p0005-" in c["trial"] for c in cancelled), cancelled
    design = _status_of(cluster, namespace)["design"]
    assert design["deviceSeconds"] == pytest.approx(
        spent + sum(c["seconds"] for c in design["cancelled"]), abs=0.5)  # fmt: skip
    assert sum(c["seconds"] for c in design["cancelled"]) > 0


def _status_of(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return dict(cluster.get("scalingstudy", "ident", namespace).get("status") or {})
