"""`python -m tests.harness up|down DIR` (what scripts/testcluster runs)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import kueue
from tests.harness.cluster import ClusterError, down, up


def _kubectl(env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, input: str | None = None, check: bool = True) -> Any:
        argv = [f"{env['TESTBIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}", *args]
        return subprocess.run(argv, input=input, text=True, capture_output=True, check=check)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(prog="testcluster", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--kueue", action="store_true", help="also start Kueue (on demand)")
    args = parser.parse_args()
    if args.action == "down":
        down(args.dir)
        return 0
    start = time.monotonic()
    try:
        env = up(args.dir)
        if args.kueue:
            kueue.start(args.dir.resolve(), _kubectl(env))
    except ClusterError as e:
        print(f"testcluster: {e}", file=sys.stderr)
        return 1
    print(f"testcluster: up in {time.monotonic() - start:.1f} s; source {args.dir / 'env'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
