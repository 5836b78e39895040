"""Peak memory of the built-in trainer on token files of growing size (issue 16).

The char-LM task reads a token file through a memory map and orders its sequences by a
keyed permutation, so a trial's memory depends on its subset and model, not on the
file. Each file here is sparse (all token 0, no disk used) of 0.1, 1, 4 and 16 GB; a
trial trains on the same 1M-token subset of each in a fresh process, which prints its
peak RSS.

Usage: python benchmarks/token_memory.py [--sizes-gb 0.1,1,4,16] [--dir /tmp]
Goal: peak RSS within 50 MB across file sizes (the bound is independent of the file).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import resource, sys
from scalingstudy_trainer.main import main
code = main()
print("MAXRSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def peak_rss_mb(token_file: Path, out: Path) -> float:
    env = {
        **os.environ,
        "SCALINGSTUDY_TASK": json.dumps({"name": "char-lm", "options": {
            "tokens": str(token_file), "vocabSize": 50257, "context": 64,
            "validationBytes": 65536}}),
        "SCALINGSTUDY_TRAINING": json.dumps({"minSteps": 20, "maxSteps": 20, "evalEvery": 20,
                                             "batchSize": 16}),
        "SCALINGSTUDY_DATA_SIZE": str(1 << 20), "SCALINGSTUDY_MODEL_SIZE": "32",
        "SCALINGSTUDY_SEED": "0", "SCALINGSTUDY_RESULT_FILE": str(out),
        "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MAXRSS"))
    return int(line.split()[1]) / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gb", default="0.1,1,4,16")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    print(f"{'file':>8s} {'tokens':>14s} {'peak RSS':>10s}")
    peaks = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for gb in (float(x) for x in args.sizes_gb.split(",")):
            path = Path(tmp) / f"tokens-{gb}.bin"
            size = int(gb * 1e9) // 2 * 2
            with path.open("wb") as f:
                f.truncate(size)  # sparse: no disk, reads as zeros
            peak = peak_rss_mb(path, Path(tmp) / "result.json")
            peaks.append(peak)
            print(f"{gb:7.1f}G {size // 2:14,d} {peak:8.1f} MB")
            path.unlink()
    print(f"spread {max(peaks) - min(peaks):.1f} MB (goal: within 50 MB)")


if __name__ == "__main__":
    main()
