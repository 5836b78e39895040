"""Wall time and fitted exponents of the quickstart study, from scratch (the whole
command: checks, trials, fit, plot and report; scripts/readme-quickstart writes the
README's figure the same way).

Usage: python benchmarks/quickstart.py [--workers N]
Prints the figures the README quotes: wall time, beta_g with its interval, beta_p.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--study", default=str(ROOT / "examples" / "quickstart.yaml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "scalingstudy.cli", "run", args.study, "--out", tmp, "--quiet"]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, sep="\n")
            return proc.returncode
        fit = json.loads((Path(tmp) / "fit.json").read_text())
    lc, ms = fit["learning_curve"], fit["model_size"]
    print(f"wall time           {wall:8.1f} s")
    print(f"trials              {len(fit['best'])} data sizes")
    print(f"beta_g              {lc['beta']:8.4f}  interval {lc['beta_interval']}")
    print(f"gamma               {lc['gamma']:8.5f}  form {lc['form']}")
    print(f"r2_log              {lc['r2_log']:8.4f}")
    if ms and ms.get("beta") is not None:
        print(f"beta_p              {ms['beta']:8.4f}  interval {ms['beta_interval']}")
    elif ms:
        print(f"beta_p              null: {ms.get('reason')}")
    print(
        "best model size per data size:",
        ", ".join(f"{b['data_size']}:{b['model_size']}" for b in fit["best"]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
