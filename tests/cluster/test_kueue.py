"""Studies behind a real Kueue: admission within a ClusterQueue's GPU quota, preemption
by a higher-priority workload, and the operator SIGKILLed while trials are queued or
preempted.

Real: Kueue's manager (controllers, scheduler, preemption, webhooks), the
kube-apiserver, the Job controller and the operator. Stand-in: the node agent for the
kubelet (see tests/harness/kueue.py and tests/harness/agent.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import (
    Cluster,
    Operator,
    pod_events,
    study_doc,
    wait_until,
)
from tests.cluster.test_operator import finished, job_creations
from tests.harness.kueue import queues

GPU = {"limits": {"nvidia.com/gpu": 1}}


def _status(cluster: Cluster, name: str, ns: str) -> dict[str, Any]:
    return dict(cluster.get("scalingstudy", name, ns).get("status") or {})


def _state(cluster: Cluster, ns: str) -> str:
    """What a test that timed out prints: each Workload's, Job's and pod's state."""
    lines = []
    for wl in cluster.items("workloads.kueue.x-k8s.io", ns):
        conditions = [f"{c['type']}={c['status']}({c.get('reason', '')})"
                      for c in wl.get("status", {}).get("conditions", [])]  # fmt: skip
        lines.append(f"workload {wl['metadata']['name']}: {' '.join(conditions)}")
    for job in cluster.items("jobs", ns):
        counts = {k: v for k, v in job["status"].items() if k != "conditions"}
        lines.append(f"job {job['metadata']['name']}: "
                     f"suspend={job['spec'].get('suspend')} status={counts}")  # fmt: skip
    for pod in cluster.items("pods", ns):
        lines.append(f"pod {pod['metadata']['name']}: {pod['status'].get('phase')}")
    return "\n".join(lines)


def _admitted(cluster: Cluster, ns: str) -> int:
    """Workloads Kueue holds quota for now (admitted, not finished, not evicted)."""
    count = 0
    for wl in cluster.items("workloads.kueue.x-k8s.io", ns):
        conditions = {c["type"]: c["status"] for c in wl.get("status", {}).get("conditions", [])}
        if conditions.get("Admitted") == "True" and conditions.get("Finished") != "True":
            count += 1
    return count


@pytest.mark.slow(35)
def test_trials_beyond_the_quota_wait_queued_never_failed_and_each_runs_once(
    cluster: Cluster, kueue_namespace: str, operator_factory: Any
) -> None:
    ns = kueue_namespace
    assert cluster.apply(yaml.safe_dump_all(queues(ns, gpus=2)), ns).returncode == 0
    doc = study_doc("quota", queueName="gpus", parallelism=4, maxFailedTrials=0)
    trainer = doc["spec"]["trainer"]
    trainer["resources"] = GPU  # 10 trials of 1 GPU each against a quota of 2
    trainer["env"] += [{"name": "TRIAL_SECONDS", "value": "3"}]
    op: Operator = operator_factory(ns)
    op.start()
    assert cluster.apply(doc, ns).returncode == 0

    most = {"running": 0, "queued": 0, "admitted": 0}
    printed = ""
    killed = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = _status(cluster, "quota", ns)
        trials = status.get("trials") or {}
        for key in ("running", "queued"):
            most[key] = max(most[key], trials.get(key, 0))
        most["admitted"] = max(most["admitted"], _admitted(cluster, ns))
        if trials.get("queued", 0) >= 2 and not printed:
            printed = cluster.kubectl("get", "scalingstudies", "-n", ns).stdout
        if trials.get("queued", 0) >= 1 and not killed:
            op.kill()  # while trials wait for admission: nothing may be created twice
            op.start()
            killed = True
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(0.3)
    status = finished(cluster, "quota", ns, timeout=10)
    assert status["phase"] == "Succeeded", status.get("conditions")
    assert killed and printed, (killed, printed)
    assert most["admitted"] <= 2 and most["running"] <= 2, most  # the quota holds
    assert most["queued"] >= 2, most  # the rest waited, shown apart from running ones
    header, row = printed.splitlines()[:2]
    cells = dict(zip(header.split(), row.split(), strict=False))
    assert int(cells["QUEUED"]) >= 2 and int(cells["RUNNING"]) <= 2, printed
    assert status["trials"]["failed"] == 0 and len(status["results"]) == 10
    assert set(job_creations(cluster, ns).values()) == {1}
    assert all(j["status"].get("failed", 0) == 0 for j in cluster.items("jobs", ns))


TRAINING = {"minSteps": 5000, "maxSteps": 5000, "evalEvery": 20, "batchSize": 32,
            "learningRate": 3e-3, "earlyStopping": {"patience": 1000}}  # fmt: skip


#: One study per way to survive a preemption: from a checkpoint, or from the start.
CHECKPOINTS = {"kept": True, "restarted": False}
#: The data sizes of both studies: the same trials, so each is its own reference.
DATA_SIZES = (256, 512, 1024)


def _preemptible_study(name: str, ns: str, checkpoints: bool) -> dict[str, Any]:
    doc = study_doc(
        name, dataSizes={"values": list(DATA_SIZES)}, modelSizes={"values": [8]},
        training=TRAINING, queueName="gpus", parallelism=2, maxFailedTrials=0,
    )  # fmt: skip
    trainer = doc["spec"]["trainer"]
    trainer.pop("command")  # the built-in trainer: SIGTERM saves a checkpoint, exits 143
    trainer["env"] = [e for e in trainer["env"] if e["name"] != "PYTHONPATH"]
    trainer["resources"] = GPU
    if checkpoints:
        trainer["volumes"] = [{"name": "checkpoints",
                               "persistentVolumeClaim": {"claimName": f"ckpt-{ns}"}}]  # fmt: skip
        trainer["volumeMounts"] = [{"name": "checkpoints", "mountPath": "/ckpt"}]
    assert trainer["backoffLimit"] == 0  # a preemption counted as a failure fails the trial
    return doc


@pytest.mark.slow(75)
def test_a_higher_priority_workload_preempts_trials_that_finish_once_where_they_would_have(
    cluster: Cluster, kueue_namespace: str, operator_factory: Any
) -> None:
    """Two studies of the same trials share the queue's 4 GPUs, 2 trials each at a time:
    one keeps checkpoints on a volume, one does not. An urgent Job of 4 GPUs preempts all
    four running trials; each runs again once, resumed or from the start, and ends where
    one uninterrupted run ends."""
    ns = kueue_namespace
    urgent = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "WorkloadPriorityClass",
              "metadata": {"name": f"urgent-{ns}"}, "value": 10000}  # fmt: skip
    docs = [*queues(ns, gpus=4), urgent]
    assert cluster.apply(yaml.safe_dump_all(docs), ns).returncode == 0
    op: Operator = operator_factory(ns)
    op.start()
    for name, checkpoints in CHECKPOINTS.items():
        assert cluster.apply(_preemptible_study(name, ns, checkpoints), ns).returncode == 0
    trials = [f"{name}-d{d}-m8-s0" for name in CHECKPOINTS for d in DATA_SIZES]

    def training_well_under_way() -> list[str]:
        """The four admitted trials, once all are past step 600 and none has finished."""
        if any(_status(cluster, name, ns).get("results") for name in CHECKPOINTS):
            return []
        going = [t for t in trials
                 if max((e.get("step", 0) for pod in pod_events(cluster, ns, f"{t}-")
                         for e in pod), default=0) >= 600]  # fmt: skip
        return going if len(going) == 4 else []

    victims = wait_until("four trials training", training_well_under_way, timeout=180)
    assert {v.split("-")[0] for v in victims} == set(CHECKPOINTS)  # parallelism 2 each
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "urgent", "labels": {"kueue.x-k8s.io/queue-name": "gpus",
                                                  "kueue.x-k8s.io/priority-class": f"urgent-{ns}"}},
        "spec": {"suspend": True, "backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "urgent", "image": "busybox", "command": ["sleep", "5"],
                            "resources": {"limits": {"nvidia.com/gpu": 4}}}]}}},
    }  # fmt: skip
    assert cluster.apply(job, ns).returncode == 0

    def preempted() -> bool:
        jobs = {j["metadata"]["name"]: j for j in cluster.items("jobs", ns)}
        return all(jobs[v]["spec"].get("suspend") and not jobs[v]["status"].get("active")
                   for v in victims)  # fmt: skip

    wait_until("Kueue to preempt all four trials", preempted, timeout=120)
    op.kill()  # while trials are preempted: nothing may be created twice
    op.start()
    rows = {}
    for name in CHECKPOINTS:
        status = finished(cluster, name, ns, timeout=400)
        assert status["phase"] == "Succeeded", (name, status.get("conditions"))
        assert len(status["results"]) == 3, name
        rows |= {r["trial"]: r for r in status["results"]}
    assert all(r["status"] == "Succeeded" for r in rows.values())
    assert cluster.get("job", "urgent", ns)["status"].get("succeeded") == 1
    assert set(job_creations(cluster, ns).values()) == {1}
    for victim in victims:
        checkpoints = CHECKPOINTS[victim.split("-")[0]]
        assert cluster.get("job", victim, ns)["status"].get("failed", 0) == 0  # backoff kept
        pods = pod_events(cluster, ns, f"{victim}-")
        assert len(pods) == 2, [[e["event"] for e in p] for p in pods]  # preempted, rerun
        stopped = [e for e in pods[0] if e["event"] == "preempted"]
        assert stopped and stopped[0]["checkpoint_saved"] is checkpoints, victim
        start = next(e for e in pods[1] if e["event"] == "start")
        assert start["resumed_from_step"] == (stopped[0]["step"] if checkpoints else 0)
        assert rows[victim]["steps"] == 5000
        # The time it was admitted before the preemption (its Workload's; the Job's start
        # time restarted) is spent too, in status and the budget's count.
        assert rows[victim].get("earlierSeconds", 0) >= 1, rows[victim]
    for trial in set(rows) - set(victims):  # queued until the victims' end: never admitted
        assert "earlierSeconds" not in rows[trial], rows[trial]
    for name in CHECKPOINTS:
        status = _status(cluster, name, ns)
        gpus = sum(r["durationSeconds"] + r.get("earlierSeconds", 0)
                   for r in status["results"])  # fmt: skip
        assert status["design"]["gpuSeconds"] == pytest.approx(gpus, abs=0.5), name
    # Resumed or restarted, each trial ends where one uninterrupted run ends. The study
    # without checkpoints ran each of its trials from step 0 to the end in one pod (a
    # victim's second pod started at 0, asserted above), with the same seed and data as
    # the checkpointing study's trial of the same sizes: that is the uninterrupted run.
    for d in DATA_SIZES:
        resumed, whole = rows[f"kept-d{d}-m8-s0"], rows[f"restarted-d{d}-m8-s0"]
        assert resumed["loss"] == pytest.approx(whole["loss"], rel=1e-9), d


def test_a_trial_of_two_pods_is_one_workload_admitted_whole(
    cluster: Cluster, kueue_namespace: str, operator_factory: Any
) -> None:
    """Two pods of one GPU each against a quota of 2: one trial at a time, both pods
    together (the contract trainer, which needs no rendezvous, stands in for training)."""
    ns = kueue_namespace
    assert cluster.apply(yaml.safe_dump_all(queues(ns, gpus=2)), ns).returncode == 0
    doc = study_doc("pairs", dataSizes={"values": [100, 200, 400]}, modelSizes={"values": [4]},
                    queueName="gpus", parallelism=3, maxFailedTrials=0)  # fmt: skip
    trainer = doc["spec"]["trainer"]
    trainer.update(nodes=2, resources=GPU)
    trainer["env"] += [{"name": "TRIAL_SECONDS", "value": "2"}]
    op: Operator = operator_factory(ns)
    op.start()
    assert cluster.apply(doc, ns).returncode == 0
    most = 0

    def done() -> bool:
        nonlocal most
        most = max(most, _admitted(cluster, ns))
        return _status(cluster, "pairs", ns).get("phase") in ("Succeeded", "Failed")

    try:
        wait_until("the study to finish", done, timeout=180, every=0.3)
    except AssertionError as exc:
        state = f"{_status(cluster, 'pairs', ns)}\n{_state(cluster, ns)}"
        raise AssertionError(f"{exc}\n{state}") from None
    status = finished(cluster, "pairs", ns, timeout=10)
    assert status["phase"] == "Succeeded", status.get("conditions")
    assert most == 1  # each trial's two pods take the whole quota
    workloads = cluster.items("workloads.kueue.x-k8s.io", ns)
    assert len(workloads) == 3
    assert all([ps["count"] for ps in w["spec"]["podSets"]] == [2] for w in workloads)
    assert set(job_creations(cluster, ns).values()) == {1}


@pytest.mark.slow(40)
def test_a_pruned_trial_gives_its_quota_back_while_its_rivals_run(
    cluster: Cluster, kueue_namespace: str, operator_factory: Any
) -> None:
    """Issue 38: a trial stopped by pruning leaves Kueue's quota at once (its Job goes, and
    its Workload with it), not when its rivals end. The trainer is the control-plane
    pruning test's (`tests/curves_trainer.py`: known curves, one clearly worse rate)."""
    from tests.cluster.test_curves import BAD, FAST
    from tests.cluster.test_curves import _spec as curves_spec

    ns = kueue_namespace
    assert cluster.apply(yaml.safe_dump_all(queues(ns, gpus=6)), ns).returncode == 0
    op: Operator = operator_factory(ns, extra=["--prune-interval=2"])
    op.start()
    doc = curves_spec("none")
    spec = doc["spec"]
    spec.update(learningRates={"values": [FAST, BAD]}, queueName="gpus", parallelism=6)
    spec["trainer"]["resources"] = GPU
    # 0.75 s an evaluation: a rival trains 30 s, pruning decides at about 9 s, and the
    # garbage collector has the rest to free the pruned trials' quota while the rivals
    # still hold theirs.
    spec["trainer"]["env"] = [{**e, "value": "0.75"} if e["name"] == "EVAL_SECONDS" else e
                              for e in spec["trainer"]["env"]]  # fmt: skip
    wait_until("the garbage collector to know studies and Workloads",
               lambda: _gc_knows(cluster, "scalingstudies.scalingstudy.io")
               and _gc_knows(cluster, "workloads.kueue.x-k8s.io"), timeout=60)  # fmt: skip
    assert cluster.apply(doc, ns).returncode == 0
    wait_until("all six trials admitted", lambda: _admitted(cluster, ns) == 6, timeout=60)

    def rates_running() -> list[float]:
        return sorted(float(j["metadata"]["labels"]["scalingstudy.io/learning-rate"])
                      for j in cluster.items("jobs", ns) if j["status"].get("active"))  # fmt: skip

    def pruned() -> list[str]:
        rows = _status(cluster, "curves", ns).get("results") or []
        found = sorted(r["trial"] for r in rows if r["status"] == "Pruned")
        return found if len(found) == 3 else []

    bad = wait_until("the clearly worse rate pruned in every slot", pruned, timeout=60)
    assert bad == [f"curves-d{d}-m4-l1p0-s0" for d in (100, 200, 400)], bad
    # Their quota is back while their rivals still train (30 s each, not run out yet): the
    # three admitted are the rivals, running.
    wait_until("the pruned trials' quota released while their rivals run",
               lambda: _admitted(cluster, ns) == 3 and rates_running() == [FAST] * 3,
               timeout=18)  # fmt: skip
    assert rates_running() == [FAST] * 3, _state(cluster, ns)


def _gc_knows(cluster: Cluster, resource: str) -> bool:
    """Whether the control plane's garbage collector has found ``resource``: it looks for
    kinds every 30 s, and until it knows both the owner of a trial's Job (the study) and
    the Job's dependent (its Workload, which holds its quota) it deletes no such
    Workload of a deleted Job. Kueue's kinds are new on a control plane whose first Kueue
    test this is (CI once freed the quota only after 20 s). A real cluster's knows them
    from the installs on."""
    log = cluster.dir / "logs" / "kube-controller-manager.log"
    return f'evaluator" resource="{resource}"' in log.read_text()
