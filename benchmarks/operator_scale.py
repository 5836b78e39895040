"""The operator at scale: a 1,000-trial study with an instant trainer on the test control plane.

Usage: python benchmarks/operator_scale.py [--trials-per-axis 10 | --shape 20,10,10]
       [--parallelism 100]

Prints the wall time until every trial is recorded, the API requests per trial by verb
(writes from the API server's audit log, all requests from the operator's own counter),
and the operator's peak RSS. Goals (issue 5): <= 3 write requests per trial, RSS <= 150 MB.
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
import threading
import time
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


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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
    total = data * models * seeds
    with tempfile.TemporaryDirectory(prefix="operator-scale-") as tmp:
        dir = Path(tmp)
        env = harness.up(dir, agent_slots=64)
        kubectl = [f"{env['TESTBIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}"]
        op: subprocess.Popen[bytes] | None = None
        try:
            subprocess.run(
                [*kubectl, "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True
            )
            subprocess.run(
                [
                    *kubectl,
                    "wait",
                    "--for=condition=established",
                    "crd/scalingstudies.scalingstudy.io",
                ],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [*kubectl, "create", "namespace", "bench"], check=True, capture_output=True
            )
            port = harness.free_port()
            op = subprocess.Popen(
                [sys.executable, "-m", "scalingstudy.cli", "operator", "-n", "bench",
                 f"--prometheus-url={env['PROMETHEUS_URL']}", f"--metrics-port={port}"],
                env={**os.environ, "KUBECONFIG": env["KUBECONFIG"]},
                stdout=(dir / "operator.log").open("wb"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            study = {
                "apiVersion": "scalingstudy.io/v1alpha1",
                "kind": "ScalingStudy",
                "metadata": {"name": "scale"},
                "spec": {
                    "task": {"name": "teacher-student"},
                    "trainer": {"command": ["sh", "-c", INSTANT], "backoffLimit": 0},
                    "dataSizes": {"min": 100, "max": 100 * 2 ** (data - 1), "factor": 2},
                    "modelSizes": {"values": [2 ** (i + 1) for i in range(models)]},
                    "seeds": seeds,
                    "parallelism": args.parallelism,
                    "maxFailedTrials": total,
                    "fit": {"bootstrap": 200},
                },
            }
            time.sleep(2)
            rss: list[float] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set() and op is not None and op.poll() is None:
                    rss.append(peak_rss_mb(op.pid))
                    time.sleep(0.5)

            threading.Thread(target=sample, daemon=True).start()
            started = time.monotonic()
            subprocess.run(
                [*kubectl, "apply", "-n", "bench", "-f", "-"],
                input=yaml.safe_dump(study).encode(),
                check=True,
                capture_output=True,
            )
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
            wall = time.monotonic() - started
            stop.set()
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            peak = peak_rss_mb(op.pid)
        finally:
            if op is not None:
                op.terminate()
                op.wait(20)
            writes: collections.Counter[str] = collections.Counter()
            for e in harness.audit_events(dir):
                agent = str(e.get("userAgent", ""))
                if agent.startswith(("scalingstudy-operator", "kopf")):
                    ref = e.get("objectRef") or {}
                    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""  # type: ignore[index]
                    writes[f"{e['verb']} {ref.get('resource')}{sub}"] += 1  # type: ignore[union-attr]
            harness.down(dir)
    recorded = len(status.get("results") or [])  # type: ignore[arg-type]
    print(f"trials: {total}   recorded: {recorded}   phase: {status.get('phase')}   "
          f"parallelism: {args.parallelism}")  # fmt: skip
    print(f"wall time until all recorded: {wall:.1f} s   ({total / wall:.1f} trials/s)")
    print(f"operator peak RSS: {peak:.1f} MB (goal <= 150 MB)")
    print("write requests (API server audit log, operator and kopf):")
    for key, count in sorted(writes.items()):
        print(f"  {key:40s} {count:6d}   {count / total:.3f} per trial")
    all_writes = sum(writes.values())
    print(f"  {'all writes':40s} {all_writes:6d}   {all_writes / total:.3f} per trial (goal <= 3)")
    print("all requests by verb (operator's scalingstudy_api_requests_total):")
    for line in metrics.splitlines():
        if line.startswith("scalingstudy_api_requests_total{"):
            verb = line.split('verb="')[1].split('"')[0]
            count = float(line.rsplit(" ", 1)[1])
            print(f"  {verb:8s} {count:8.0f}   {count / total:.3f} per trial")


if __name__ == "__main__":
    main()
