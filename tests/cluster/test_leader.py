"""Two replicas, one leader: the standby takes over within the Lease's duration when the
leader is SIGKILLed, and no trial is started twice across the hand-over."""

from __future__ import annotations

import time
from typing import Any

from tests.cluster.conftest import Cluster, Operator, study_doc, wait_until
from tests.cluster.test_operator import finished, job_creations, results_at_least

DURATION, RENEW, RETRY = 6, 4, 1
TAKEOVER_BOUND = DURATION + 2 * RETRY + 2  # the stated hand-over time, with some slack


def holder(cluster: Cluster, ns: str) -> str:
    out = cluster.kubectl("get", "lease", "ha", "-n", ns, "-o",
                          "jsonpath={.spec.holderIdentity}", check=False)  # fmt: skip
    return out.stdout.strip() if out.returncode == 0 else ""


def test_the_standby_takes_over_when_the_leader_is_killed(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    flags = [
        "--leader-election", f"--leader-election-namespace={namespace}",
        "--leader-election-id=ha", f"--lease-duration={DURATION}",
        f"--renew-deadline={RENEW}", f"--retry-period={RETRY}",
    ]  # fmt: skip
    first: Operator = operator_factory(namespace, extra=flags)
    first.start()
    leader_id = wait_until("a leader", lambda: holder(cluster, namespace), timeout=60)
    assert first.proc is not None and leader_id.endswith(f"-{first.proc.pid}")
    second: Operator = operator_factory(namespace, extra=flags)
    second.start()
    doc = study_doc("ha", parallelism=4)
    doc["spec"]["trainer"]["env"].append({"name": "TRIAL_SECONDS", "value": "1"})
    assert cluster.apply(doc, namespace).returncode == 0
    results_at_least(cluster, "ha", namespace, 3, timeout=120)
    assert holder(cluster, namespace) == leader_id  # the standby did not act meanwhile
    first.kill()
    killed = time.monotonic()
    assert second.proc is not None
    new = wait_until(
        "the standby to take over",
        lambda: holder(cluster, namespace).endswith(f"-{second.proc.pid}"),  # type: ignore[union-attr]
        timeout=60,
        every=0.2,
    )
    took = time.monotonic() - killed
    assert new and took <= TAKEOVER_BOUND, took
    status = finished(cluster, "ha", namespace, timeout=180)
    assert status["phase"] == "Succeeded", status.get("conditions")
    creations = job_creations(cluster, namespace)
    assert len(creations) == 10 and set(creations.values()) == {1}, creations
    assert second.alive()
