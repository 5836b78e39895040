"""Fits run in a child process: `python -m scalingstudy.cluster.fitproc` reads points and
options as JSON on stdin and writes the fit JSON (or {"error": ...}) on stdout.

The numerical stack (numpy, scipy) and a fit's transient arrays then never live in the
operator: its memory stays small and flat, a pathological fit cannot take it down, and a
CPU-heavy joint fit does not hold the operator's interpreter lock.

Two kinds of failure, told apart here because the operator treats them oppositely. A fit
that ran to no answer (it timed out, the child was killed or ran out of memory) says
nothing of the data: FitUnavailableError, tried again with backoff. A fit that raised
(FitError for data it cannot use, any other exception for a defect of the fit on these
data) gives the same answer every time it is run on the same input: it is reported, with
the exception's own words, and not retried until the input changes.
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


class FitDefectError(FitError):
    """The fit raised an exception that is not a FitError on these inputs: deterministic
    (the same input raises again), so it is a failed fit, not one to try again."""


def request_of(points: Sequence[Point], options: FitOptions) -> dict[str, Any]:
    """What the child reads: the whole input of the fit (its answer is a function of it)."""
    return {
        "points": [dataclasses.asdict(p) for p in points],
        "options": dataclasses.asdict(options),
    }


def run_fit(
    points: Sequence[Point], options: FitOptions, timeout: float = FIT_TIMEOUT
) -> FitReport:
    """The fit report; raises FitError for data that cannot be fitted (FitDefectError for
    a fit that raised on them), FitUnavailableError when the child timed out or died
    (nothing is known of the data then)."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "scalingstudy.cluster.fitproc"],
            input=json.dumps(request_of(points, options)),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FitUnavailableError(f"the fit took longer than {timeout:.0f} s") from None
    return answer_of(out.returncode, out.stdout, out.stderr)


def answer_of(returncode: int, stdout: str, stderr: str) -> FitReport:
    """The child's answer: a report, or the error that says which kind of failure it was.
    Only a child that ended without writing an answer (killed, out of memory, the
    interpreter itself failing) is unavailable."""
    try:
        answer = json.loads(stdout) if returncode == 0 else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {returncode}"]
        raise FitUnavailableError(f"the fit process failed: {tail[0]}")
    if "error" in answer:
        kind = FitDefectError if answer.get("defect") else FitError
        raise kind(str(answer["error"]))
    try:
        return FitReport.from_json(answer["fit"])
    except (KeyError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        # An answer this operator cannot read (a child of another version): a defect of
        # the fit, said in status, never an exception out of the pass retried forever.
        raise FitDefectError(f"the fit process answered unreadably: {exc}") from None


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """The fit of one request, or its error: FitError as the data's, any other exception
    (MemoryError aside: a resource, not the input) as a defect with its type and words."""
    from scalingstudy.fitting import fit_points

    try:
        points = [Point(**p) for p in request["points"]]
        raw = dict(request["options"])
        raw["predict_at"] = tuple(raw.get("predict_at") or ())
        return {"fit": fit_points(points, FitOptions(**raw)).to_json()}
    except FitError as exc:
        return {"error": str(exc)}
    except MemoryError:
        raise
    except Exception as exc:  # a defect of the fit on this input: the same every time
        return {"error": f"the fit raised {type(exc).__name__}: {exc}", "defect": True}


def main() -> int:
    json.dump(answer(json.load(sys.stdin)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
