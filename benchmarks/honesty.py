"""The honesty benchmark: random studies of many shapes through every output path.

Each generated study (`study_shapes.py`) is fitted as `scalingstudy fit --json --joint
--predict-at --target-loss` would, then rendered as the CLI table, fit.json, the status
view and report.html (and, with --plot, the PNG). Per invariant it counts the studies
that break it:

- crash: anything but a clean FitError (a traceback for the user);
- the invariants of `scalingstudy.fitting.verdict.violations` (point inside its
  interval, no zero-width interval, no fit bound printed as a limit, an unidentified
  exponent named and not drawn, a prediction below the floor explained, no finite data
  size for a target below the floor);
- agreement: the JSON read back equals the report, the status view carries the same
  intervals, the table prints "unbounded" exactly where an end is null.

    python benchmarks/honesty.py [--studies 300] [--seed 0] [--plot] [--unjudged]

``--unjudged`` counts the violations of the engine's report before `verdict.judge` (what
main printed before the verdict step existed).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scalingstudy.fitting import FitError, fit_points
from scalingstudy.fitting import invariants as verdict_module
from scalingstudy.fitting.report import FitReport
from scalingstudy.render.html import ReportInput, render_report
from scalingstudy.render.table import format_fit
from study_shapes import Study, random_study


def _kind(problem: str) -> str:
    """An invariant's name from a violation message."""
    for key in ("outside its interval", "zero-width", "bound of the fit", "not identified",
                "below the fitted floor", "target below"):  # fmt: skip
        if key in problem:
            return key
    return problem.split(":")[0]


def output_problems(report: FitReport, plot_dir: Path | None = None) -> list[str]:
    """Disagreements between the outputs that render one report."""
    problems = []
    if FitReport.from_json(report.to_json()) != report:
        problems.append("agreement: fit.json does not read back as the report")
    status = FitReport.model_validate(report.to_status())
    if status.learning_curve.beta_interval != report.learning_curve.beta_interval:
        problems.append("agreement: the status's beta_g interval differs from fit.json")
    text = format_fit(report)
    opens = sum(
        1 for q in verdict_module.quantities(report) if q.interval is not None
        and None in q.interval and q.path.startswith(("learning_curve.beta", "model_size",
                                                      "predictions[", "data_for_target"))
        and not q.path.endswith("curve_loss")
    )  # fmt: skip
    if opens and "unbounded" not in text:
        problems.append("agreement: an open interval end is not printed as unbounded")
    render_report(
        ReportInput(
            title="t",
            source="benchmark",
            records=(),
            fit=report,
            fit_error=None,
            design=None,
            plot_png=None,
        )
    )
    if plot_dir is not None:
        from scalingstudy.render.plot import plot_study

        plot_study([], report, plot_dir / "p.png")
    return problems


def check(study: Study, plot_dir: Path | None) -> list[str]:
    try:
        report = fit_points(study.points, study.options)
    except verdict_module.InvariantError as exc:
        return [str(exc)]
    except FitError:
        return []
    except Exception as exc:
        return [f"crash: {type(exc).__name__}: {exc}"]
    return verdict_module.violations(report) + output_problems(report, plot_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", action="store_true", help="also draw every study's plot")
    parser.add_argument("--unjudged", action="store_true",
                        help="count violations of the report before the verdict step")  # fmt: skip
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    per_kind: collections.Counter[str] = collections.Counter()
    per_shape: collections.Counter[str] = collections.Counter()
    shapes: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    plot_dir = Path("/tmp/honesty-plots") if args.plot else None
    if plot_dir:
        plot_dir.mkdir(exist_ok=True)
    patch = mock.patch("scalingstudy.fitting.engine.checked", side_effect=lambda r: r)
    with patch if args.unjudged else mock.patch.dict({}):
        for _ in range(args.studies):
            study = random_study(rng)
            shapes[study.shape] += 1
            problems = check(study, plot_dir)
            for kind in {_kind(p) for p in problems}:
                per_kind[kind] += 1
            if problems:
                per_shape[study.shape] += 1
    elapsed = time.perf_counter() - started
    print(f"studies: {args.studies} ({', '.join(f'{k} {v}' for k, v in sorted(shapes.items()))})")
    print(f"outputs checked per study: fit.json, status view, CLI table, report.html"
          f"{', plot' if args.plot else ''}; {elapsed:.0f} s")  # fmt: skip
    print(f"studies with a violation: {sum(per_shape.values())}")
    for kind, count in sorted(per_kind.items()):
        print(f"  {kind}: {count}")
    for shape, count in sorted(per_shape.items()):
        print(f"  shape {shape}: {count}")


if __name__ == "__main__":
    main()
