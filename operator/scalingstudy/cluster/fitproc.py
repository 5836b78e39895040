"""Fits run in a child process: `python -m scalingstudy.cluster.fitproc` reads points and
options as JSON on stdin and writes the fit JSON (or {"error": ...}) on stdout.

The numerical stack (numpy, scipy) and a fit's transient arrays then never live in the
operator: its memory stays small and flat, a pathological fit cannot take it down, and a
CPU-heavy joint fit does not hold the operator's interpreter lock.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from scalingstudy.fitting import FitError, FitOptions, FitUnavailableError, Point
from scalingstudy.fitting.report import FitReport

FIT_TIMEOUT = 600.0


def run_fit(
    points: Sequence[Point], options: FitOptions, timeout: float = FIT_TIMEOUT
) -> FitReport:
    """The fit report; raises FitError for data that cannot be fitted, FitUnavailableError when
    the child timed out or failed (nothing is known of the data then)."""
    request = {
        "points": [dataclasses.asdict(p) for p in points],
        "options": dataclasses.asdict(options),
    }
    try:
        out = subprocess.run(
            [sys.executable, "-m", "scalingstudy.cluster.fitproc"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FitUnavailableError(f"the fit took longer than {timeout:.0f} s") from None
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
        raise FitUnavailableError(f"the fit process failed: {tail[0]}")
    answer = json.loads(out.stdout)
    if "error" in answer:
        raise FitError(str(answer["error"]))
    return FitReport.from_json(answer["fit"])


def main() -> int:
    from scalingstudy.fitting import fit_points

    request = json.load(sys.stdin)
    points = [Point(**p) for p in request["points"]]
    raw = request["options"]
    raw["predict_at"] = tuple(raw.get("predict_at") or ())
    options = FitOptions(**raw)
    try:
        answer: dict[str, Any] = {"fit": fit_points(points, options).to_json()}
    except FitError as exc:
        answer = {"error": str(exc)}
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
