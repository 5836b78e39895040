"""`python -m tests.harness up|down DIR` (what scripts/testcluster runs)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.harness.cluster import ClusterError, down, up


def main() -> int:
    parser = argparse.ArgumentParser(prog="testcluster", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("dir", type=Path)
    args = parser.parse_args()
    if args.action == "down":
        down(args.dir)
        return 0
    start = time.monotonic()
    try:
        up(args.dir)
    except ClusterError as e:
        print(f"testcluster: {e}", file=sys.stderr)
        return 1
    print(f"testcluster: up in {time.monotonic() - start:.1f} s; source {args.dir / 'env'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
