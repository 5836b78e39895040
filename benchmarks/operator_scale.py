"""The operator at scale: a 1,000-trial study with an instant trainer on the test control plane.

Usage: python benchmarks/operator_scale.py [--trials-per-axis 10 | --shape 20,10,10]
       [--parallelism 100]

Prints the wall time until every trial is recorded (trials per second), the write requests
per trial by kind (Job, Event create, Event patch, status patch, other: from the API
server's audit log), the study's Events by reason, all requests by verb (the operator's
own counter), and the operator's resident memory (peak and at the end). Goals (issue 40
item 6, at 1,000 trials): <= 1.2 writes per trial (1.536 before), peak RSS <= 100 MB
(105 MB before).
The trainer is a shell one-liner that writes its result to the termination-message path,
so the figures measure the operator and the control plane, not training.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import cluster as harness  # noqa: E402

INSTANT = (
    'awk -v d="$SCALINGSTUDY_DATA_SIZE" -v m="$SCALINGSTUDY_MODEL_SIZE" '
    """'BEGIN { printf "{\\"validation_loss\\": %.6f, \\"parameters\\": %d}", """
    """(2 * d ^ -0.4 + 0.01) * (1 + 0.02 * (m % 3)), m * 100 }' > "$SCALINGSTUDY_RESULT_FILE" """
)


#: Measured before issue 40 item 6 at 1,000 instant trials: writes per trial, resident MB.
BEFORE_WRITES, BEFORE_RSS = 1.536, 105.0
#: Goals of issue 40 item 6 at 1,000 trials.
GOAL_WRITES, GOAL_RSS = 1.2, 100.0
#: The kinds of write, as the issue counts them: (verb, resource) from the audit log.
KINDS = {
    ("create", "jobs"): "Job",
    ("create", "events"): "Event create",
    ("patch", "events"): "Event patch",
    ("update", "events"): "Event patch",
    ("patch", "scalingstudies/status"): "status patch",
    ("update", "scalingstudies/status"): "status patch",
}


def rss_mb(pid: int, key: str = "VmHWM") -> float:
    """The process's resident memory (VmHWM: its peak so far; VmRSS: now), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def writes_by_kind(audit: list[dict[str, object]]) -> collections.Counter[str]:
    """The operator's (and kopf's) writes in the API server's audit log, by kind."""
    kinds: collections.Counter[str] = collections.Counter()
    for e in audit:
        if not str(e.get("userAgent", "")).startswith(("scalingstudy-operator", "kopf")):
            continue
        ref = e.get("objectRef") or {}
        assert isinstance(ref, dict)
        resource = ref.get("resource", "") + (
            f"/{ref['subresource']}" if ref.get("subresource") else ""
        )
        kinds[KINDS.get((str(e["verb"]), resource), f"other ({e['verb']} {resource})")] += 1
    return kinds


def study_manifest(data: int, models: int, seeds: int, parallelism: int) -> dict[str, object]:
    total = data * models * seeds
    return {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": "scale"},
        "spec": {
            "task": {"name": "teacher-student"},
            "trainer": {"command": ["sh", "-c", INSTANT], "backoffLimit": 0},
            "dataSizes": {"min": 100, "max": 100 * 2 ** (data - 1), "factor": 2},
            "modelSizes": {"values": [2 ** (i + 1) for i in range(models)]},
            "seeds": seeds,
            "parallelism": parallelism,
            "maxFailedTrials": total,
            "fit": {"bootstrap": 200},
        },
    }


def wait_finished(kubectl: list[str], started: float) -> dict[str, object]:
    """The study's status once Succeeded or Failed (an hour at most)."""
    status: dict[str, object] = {}
    while time.monotonic() - started < 3600:
        out = subprocess.run(
            [*kubectl, "get", "scalingstudy", "scale", "-n", "bench", "-o", "json"],
            capture_output=True,
            check=True,
        )
        status = json.loads(out.stdout).get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(2)
    return status


def study_events(kubectl: list[str]) -> collections.Counter[str]:
    """The study's Events by reason: how many objects, and how many occurrences they say."""
    out = subprocess.run([*kubectl, "get", "events", "-n", "bench", "-o", "json"],
                         capture_output=True, check=True)  # fmt: skip
    said: collections.Counter[str] = collections.Counter()
    for e in json.loads(out.stdout)["items"]:
        if e["involvedObject"].get("kind") == "ScalingStudy":
            said[f"{e['reason']} (Events)"] += 1
            said[f"{e['reason']} (count)"] += int(e.get("count") or 1)
    return said


@dataclass
class Measured:
    status: dict[str, object] = field(default_factory=dict)
    wall: float = float("nan")
    idle: float = float("nan")
    peak: float = float("nan")
    final_rss: float = float("nan")
    metrics: str = ""
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    writes: collections.Counter[str] = field(default_factory=collections.Counter)


def start_operator(env: dict[str, str], dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "scalingstudy.cli", "operator", "-n", "bench",
         f"--prometheus-url={env['PROMETHEUS_URL']}", f"--metrics-port={port}"],
        env={**os.environ, "KUBECONFIG": env["KUBECONFIG"]},
        stdout=(dir / "operator.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def measure(dir: Path, study: dict[str, object]) -> Measured:
    """Bring the test control plane up, run the operator and the study, take it down."""
    env = harness.up(dir, agent_slots=64)
    kubectl = [f"{env['TESTBIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}"]
    op: subprocess.Popen[bytes] | None = None
    m = Measured()
    try:
        for argv in (["apply", "-f", str(ROOT / "crds")],
                     ["wait", "--for=condition=established", "crd/scalingstudies.scalingstudy.io"],
                     ["create", "namespace", "bench"]):  # fmt: skip
            subprocess.run([*kubectl, *argv], check=True, capture_output=True)
        port = harness.free_port()
        op = start_operator(env, dir, port)
        time.sleep(5)
        m.idle = rss_mb(op.pid, "VmRSS")  # imports and watches, before any study
        started = time.monotonic()
        manifest = yaml.safe_dump(study).encode()
        subprocess.run([*kubectl, "apply", "-n", "bench", "-f", "-"], input=manifest, check=True,
                       capture_output=True)  # fmt: skip
        m.status = wait_finished(kubectl, started)
        m.wall = time.monotonic() - started
        m.metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        m.peak, m.final_rss = rss_mb(op.pid), rss_mb(op.pid, "VmRSS")
        m.events = study_events(kubectl)
    finally:
        if op is not None:
            op.terminate()
            op.wait(20)
        m.writes = writes_by_kind(harness.audit_events(dir))
        harness.down(dir)
    return m


def report(m: Measured, total: int, parallelism: int) -> None:
    recorded = len(m.status.get("results") or [])  # type: ignore[arg-type]
    print(f"trials: {total}   recorded: {recorded}   phase: {m.status.get('phase')}   "
          f"parallelism: {parallelism}")  # fmt: skip
    print(f"wall time until all recorded: {m.wall:.1f} s   ({total / m.wall:.2f} trials/s)")
    print(f"operator resident memory: peak {m.peak:.1f} MB, at the end {m.final_rss:.1f} MB, "
          f"idle before the study {m.idle:.1f} MB "
          f"(goal <= {GOAL_RSS:.0f} MB; {BEFORE_RSS:.0f} MB before issue 40)")  # fmt: skip
    print("write requests per trial by kind (API server audit log, operator and kopf):")
    for kind in ("Job", "Event create", "Event patch", "status patch"):
        print(f"  {kind:32s} {m.writes[kind]:6d}   {m.writes[kind] / total:.3f}")
    other = sum(c for k, c in m.writes.items() if k.startswith("other"))
    print(f"  {'other':32s} {other:6d}   {other / total:.3f}   "
          f"{sorted(k for k in m.writes if k.startswith('other'))}")  # fmt: skip
    all_writes = sum(m.writes.values())
    print(f"  {'all writes':32s} {all_writes:6d}   {all_writes / total:.3f}   "
          f"(goal <= {GOAL_WRITES}; {BEFORE_WRITES} before issue 40)")  # fmt: skip
    print("the study's Events by reason (objects written, occurrences they count):")
    for reason, said in sorted(m.events.items()):
        print(f"  {reason:40s} {said:6d}")
    print("all requests by verb (operator's scalingstudy_api_requests_total):")
    for line in m.metrics.splitlines():
        if line.startswith("scalingstudy_api_requests_total{"):
            verb = line.split('verb="')[1].split('"')[0]
            sent = float(line.rsplit(" ", 1)[1])
            print(f"  {verb:8s} {sent:8.0f}   {sent / total:.3f} per trial")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials-per-axis", type=int, default=10, help="data x model x seeds")
    parser.add_argument(
        "--shape", default="", help="DATA,MODELS,SEEDS instead (20,10,10: the 2,000-trial cap)"
    )
    parser.add_argument("--parallelism", type=int, default=100)
    args = parser.parse_args()
    n = args.trials_per_axis
    data, models, seeds = (int(v) for v in args.shape.split(",")) if args.shape else (n, n, n)
    with tempfile.TemporaryDirectory(prefix="operator-scale-") as tmp:
        m = measure(Path(tmp), study_manifest(data, models, seeds, args.parallelism))
    report(m, data * models * seeds, args.parallelism)


if __name__ == "__main__":
    main()
