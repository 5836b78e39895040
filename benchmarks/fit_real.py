"""Prediction accuracy and interval coverage on real published learning curves.

The curves are the language half of the extrapolation benchmark of Alabdulmohsin,
Neyshabur and Zhai (NeurIPS 2022), in ../shared/data/learning-curves/ (its README
describes them). Every curve is fitted on its `Training = 1` points only and
predicts its held-out points (all larger than every fitted size). Printed per
domain: held-out points inside the nominal 90% prediction interval, the median
interval width in log loss, and the benchmark's own measure (per curve the RMSE of
log predicted - log held-out, averaged over curves). Beside them, the same RMSE of
M4 alone (`fitting/forms.py`, fitted on the same points) and of the plain power
law plus constant. ``--cuts 2`` adds a harder split: each curve also cut before
its last 1 and 2 fitted points (those become held out too), which gives the
one-point-per-curve NMT domain more than five checks.

Usage: python benchmarks/fit_real.py [--data DIR] [--cuts 0] [--bootstrap 200]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from scalingstudy.fitting import FitOptions, Point, fit_points
from scalingstudy.fitting.forms import FORMS

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "learning-curves"

Curve = tuple[str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def load(path: Path) -> list[Curve]:
    """(domain, name, fit x, fit y, held-out x, held-out y) per curve, rows de-duplicated."""
    seen: dict[tuple[str, str, str], set[tuple[float, float, str]]] = defaultdict(set)
    with (path / "benchmark.lang.csv").open() as f:
        for row in csv.DictReader(f):
            key = (row["Domain"], row["Task"], row["Model"])
            seen[key].add((float(row["Seen Examples"]), float(row["Loss"]), row["Training"]))
    out = []
    for (domain, task, model), rows in seen.items():
        fit = sorted((x, y) for x, y, t in rows if t == "1")
        held = sorted((x, y) for x, y, t in rows if t == "0")
        if not held:
            continue
        fx, fy = np.array(fit).T
        hx, hy = np.array(held).T
        out.append((domain, f"{task} {model}", fx, fy, hx, hy))
    return out


def cut(curves: list[Curve], cuts: int) -> list[Curve]:
    out = list(curves)
    for domain, name, fx, fy, hx, hy in curves:
        for c in range(1, cuts + 1):
            if len(fx) - c >= 5:
                out.append(
                    (
                        domain,
                        f"{name} cut {c}",
                        fx[:-c],
                        fy[:-c],
                        np.concatenate([fx[-c:], hx]),
                        np.concatenate([fy[-c:], hy]),
                    )
                )
    return out


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.log(pred) - np.log(truth)) ** 2)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--cuts", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    curves = cut(load(args.data), args.cuts)
    forms = {f.name: f for f in FORMS}
    stats: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for domain, name, fx, fy, hx, hy in curves:
        points = [Point(float(a), float(b)) for a, b in zip(fx, fy, strict=True)]
        report = fit_points(
            points, FitOptions(bootstrap=args.bootstrap, predict_at=tuple(float(v) for v in hx))
        )
        preds = report.predictions
        loss = np.array([p.loss for p in preds])
        lo = np.array([p.interval[0] if p.interval else np.nan for p in preds])
        hi = np.array([p.interval[1] if p.interval else np.nan for p in preds])
        inside = (hy >= lo) & (hy <= hi)
        s = stats[domain]
        s["inside"].append(float(inside.sum()))
        s["held"].append(float(len(hy)))
        s["width"].extend(np.log(hi / lo).tolist())
        s["ours"].append(rmse(loss, hy))
        old = np.array([p.parametric_interval or [np.nan, np.nan] for p in preds])
        s["old_inside"].append(float(((hy >= old[:, 0]) & (hy <= old[:, 1])).sum()))
        for label, form in (("m4", forms["m4"]), ("m2", forms["power-law-plus-constant"])):
            fitted = form.fit(fx, fy, None)
            s[label].append(rmse(fitted(hx), hy) if fitted is not None else np.nan)
        if args.verbose:
            print(
                f"  {domain:4s} {name:34s} form {report.extrapolation.form:24s} "
                f"inside {int(inside.sum())}/{len(hy)} rmse {s['ours'][-1]:.4f} "
                f"m4 {s['m4'][-1]:.4f}"
            )
    print(
        f"{'domain':6s} {'curves':>6s} {'held-out':>8s} {'coverage90':>10s} {'width(log)':>10s} "
        f"{'rmse':>8s} {'M4 rmse':>8s} {'M2 rmse':>8s} {'bootstrap-only coverage':>24s}"
    )
    for domain, s in stats.items():
        held = sum(s["held"])
        print(
            f"{domain:6s} {len(s['ours']):6d} {int(held):8d} {sum(s['inside']) / held:10.3f} "
            f"{float(np.median(s['width'])):10.4f} {np.mean(s['ours']):8.5f} "
            f"{np.nanmean(s['m4']):8.5f} {np.nanmean(s['m2']):8.5f} "
            f"{sum(s['old_inside']) / held:24.3f}"
        )
    print(
        "goals: coverage 0.80-0.95 per domain, narrow intervals; rmse <= M4's on every domain "
        "(BB, BIG-Bench, is step-like: no smooth law is expected to do well)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
