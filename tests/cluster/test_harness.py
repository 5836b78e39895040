"""The test harness itself: a real control plane whose pods really run (issue 4)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.cluster.conftest import Cluster, wait_until
from tests.harness import cluster as harness


def job(name: str, command: list[str], backoff: int = 0, **spec: Any) -> str:
    """A one-container Job; OUT names the termination-message path (the agent maps it)."""
    return yaml.safe_dump(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": backoff,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "main",
                                "image": "busybox",
                                "command": command,
                                "env": [{"name": "OUT", "value": "/dev/termination-log"}],
                            }
                        ],
                    }
                },
                **spec,
            },
        }
    )


def condition(c: Cluster, kind: str, name: str, ns: str, cond: str) -> bool:
    obj = c.get(kind, name, ns)
    return any(
        x["type"] == cond and x["status"] == "True"
        for x in obj.get("status", {}).get("conditions", [])
    )


def test_job_runs_a_real_process_and_completes(cluster: Cluster, namespace: str) -> None:
    script = "import os; open(os.environ['OUT'], 'w').write('done:' + str(os.getpid()))"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=job("ok", ["python", "-c", script]))
    wait_until("Job ok Complete", lambda: condition(cluster, "job", "ok", namespace, "Complete"))
    (pod,) = cluster.items("pods", namespace, "job-name=ok")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0
    # The message came from the process itself through the termination-message path.
    assert term["message"].startswith("done:") and term["message"] != "done:0"
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["nodeName"] == "scalingstudy-test-node"


def test_failing_command_fails_the_job_after_backoff_limit(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=job("bad", ["sh", "-c", "echo broken >&2; exit 3"], backoff=1),
    )  # fmt: skip
    wait_until(
        "Job bad Failed",
        lambda: condition(cluster, "job", "bad", namespace, "Failed"),
        timeout=90,
    )
    pods = cluster.items("pods", namespace, "job-name=bad")
    codes = [p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods]
    assert codes == [3, 3]  # the first try and backoffLimit=1 retry
    assert cluster.get("job", "bad", namespace)["status"]["failed"] == 2


def test_suspending_a_job_terminates_its_process(cluster: Cluster, namespace: str) -> None:
    marker = cluster.dir / f"{namespace}-suspend.pid"
    script = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=job("sleepy", ["python", "-c", script])
    )
    pid = int(wait_until("the pod's process", lambda: marker.exists() and marker.read_text()))
    assert Path(f"/proc/{pid}").exists()
    cluster.kubectl("patch", "job", "sleepy", "-n", namespace, "--type=merge", "-p",
                    '{"spec": {"suspend": true}}')  # fmt: skip
    wait_until("the process to end", lambda: not _running(pid), timeout=60)
    wait_until(
        "the suspended Job to have no pods",
        lambda: not cluster.items("pods", namespace, "job-name=sleepy"),
        timeout=60,
    )
    assert condition(cluster, "job", "sleepy", namespace, "Suspended")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_deleting_the_owner_garbage_collects_its_jobs(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = cluster.get("configmap", "owner", namespace)["metadata"]["uid"]
    doc = yaml.safe_load(job("owned", ["sleep", "600"]))
    doc["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid,
         "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    wait_until("the Job's pod", lambda: cluster.items("pods", namespace, "job-name=owned"))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_until(
        "the Job and its pod to be collected",
        lambda: not cluster.items("jobs", namespace) and not cluster.items("pods", namespace),
        timeout=90,
    )


def test_crd_schema_rejects_bad_object_naming_the_field(cluster: Cluster, namespace: str) -> None:
    bad = {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": "bad"},
        "spec": {
            "task": {"name": "teacher-student"},
            "dataSizes": {"values": [10, 20, 40]},
            "modelSizes": {"values": [1]},
            "parallelism": 0,
        },
    }
    out = cluster.apply(bad, namespace)
    assert out.returncode != 0
    assert "spec.parallelism" in out.stderr
    good = {**bad, "metadata": {"name": "good"}, "spec": {**bad["spec"], "parallelism": 1}}
    assert cluster.apply(good, namespace).returncode == 0
    table = cluster.kubectl("get", "scalingstudies", "-n", namespace).stdout
    header = ["NAME", "PHASE", "TRIALS", "RUNNING", "QUEUED", "BETAG", "BETAP", "SPEND", "AGE"]
    assert table.splitlines()[0].split() == header
    wide = cluster.kubectl("get", "scalingstudies", "-n", namespace, "-o", "wide").stdout
    assert wide.splitlines()[0].split()[-3:] == ["TASK", "GAMMA", "AGE"]
    assert "teacher-student" in wide
    assert "good" in table


def test_pushed_metric_is_queryable_in_prometheus(cluster: Cluster) -> None:
    gateway, prometheus = cluster.env["PUSHGATEWAY_URL"], cluster.env["PROMETHEUS_URL"]
    body = "harness_probe_value 42.5\n"
    r = httpx.put(f"{gateway}/metrics/job/harness/instance/probe", content=body)
    assert r.status_code in (200, 202)

    def query() -> float | None:
        r = httpx.post(
            f"{prometheus}/api/v1/query", data={"query": 'harness_probe_value{job="harness"}'}
        )
        result = r.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    assert wait_until("the sample in Prometheus", query, timeout=30) == 42.5


def test_up_then_down_leaves_no_process(tmp_path: Path) -> None:
    dir = tmp_path / "c"
    env = harness.up(dir)
    try:
        kubectl = [f"{env['TESTBIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}"]
        import subprocess

        subprocess.run(
            [*kubectl, "apply", "-f", "-"], input=job("sleeper", ["sleep", "600"]), text=True,
            check=True, capture_output=True,
        )  # fmt: skip
        wait_until("the sleeper process", lambda: _processes_under(dir, pods_only=True), timeout=60)
        pids = [pid for _, pid, _ in harness.recorded(dir)]
        assert len(pids) == 6
    finally:
        harness.down(dir)
    assert not [p for p in pids if _running(p)]
    assert _processes_under(dir) == []


def _processes_under(dir: Path, pods_only: bool = False) -> list[int]:
    """Processes whose working directory or command line lies under dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = str((entry / "cwd").readlink())
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        where = str(dir / "pods") if pods_only else str(dir)
        if (cwd.startswith(where) or where in cmdline) and _running(int(entry.name)):
            found.append(int(entry.name))
    return found
