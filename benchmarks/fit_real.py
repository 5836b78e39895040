"""Prediction accuracy, interval coverage and worst cases on real learning curves.

Two sets (tests/data/README.md and ../shared/data/learning-curves/README.md describe
them):

- ``lang``: the language half of the extrapolation benchmark of Alabdulmohsin,
  Neyshabur and Zhai (NeurIPS 2022). Every curve is fitted on its `Training = 1`
  points and predicts its held-out points (all larger than every fitted size).
  ``--cuts 2`` also cuts each curve before its last 1 and 2 fitted points. In the
  repository (tests/data/learning-curves/, de-duplicated), so it runs from a clone alone.
- ``lcdb``: 232 curves of classic learners from LCDB 1.0 (error rate and log-loss),
  fitted on the sizes <= largest/8 (and, separately, <= largest/4) and predicting
  every larger size. Not in the repository (392 KB): from ../shared/data/learning-curves/
  beside the clone, or ``--data DIR``.

Printed per domain and metric: the share of held-out points inside the nominal 90%
prediction interval, the median interval width (log), mean and median RMSE of log
loss per curve for the product (``ours``), M4 alone, the power law plus constant
(M2) alone and the last observed value, and the catastrophic curves: RMSE(log) > 1
where the last value's is < 0.5 (a prediction that collapses or explodes on a curve
a naive forecast gets right).

Usage: python benchmarks/fit_real.py [--data DIR] [--sets lang,lcdb] [--cuts 0]
                                     [--bootstrap 100] [--workers 2] [--verbose]
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalingstudy.fitting import FitOptions, Point, fit_points
from scalingstudy.fitting.forms import FORMS

#: Where each set's file is unless --data says: the language set is in the repository.
LANG_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "learning-curves"
LCDB_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "learning-curves"
CATASTROPHIC = 1.0
NAIVE_GOOD = 0.5


@dataclass(frozen=True)
class Curve:
    domain: str
    name: str
    fx: np.ndarray
    fy: np.ndarray
    hx: np.ndarray
    hy: np.ndarray


def load_lang(path: Path, cuts: int) -> list[Curve]:
    """Per curve its fitted and held-out points, rows de-duplicated."""
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
        out.append(Curve(domain, f"{task} {model}", fx, fy, hx, hy))
        for c in range(1, cuts + 1):
            if len(fx) - c >= 5:
                out.append(
                    Curve(
                        domain,
                        f"{task} {model} cut {c}",
                        fx[:-c],
                        fy[:-c],
                        np.concatenate([fx[-c:], hx]),
                        np.concatenate([fy[-c:], hy]),
                    )
                )
    return out


def load_lcdb(path: Path, fraction: int) -> list[Curve]:
    """Fit the sizes <= largest/fraction, hold out the rest."""
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    metric: dict[str, str] = {}
    with (path / "lcdb-dev.csv").open() as f:
        for row in csv.DictReader(f):
            rows[row["curve"]].append((float(row["size"]), float(row["error"])))
            metric[row["curve"]] = row["metric"]
    out = []
    for name, pts in rows.items():
        pts.sort()
        x, y = np.array(pts).T
        if np.any(y <= 0):  # an error rate of exactly 0 has no log: the curve cannot be scored
            keep = y > 0
            x, y = x[keep], y[keep]
        cut = x.max() / fraction
        fit, held = x <= cut, x > cut
        if fit.sum() < 3 or held.sum() < 1:
            continue
        out.append(Curve(f"lcdb/{fraction} {metric[name]}", name, x[fit], y[fit], x[held], y[held]))
    return out


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.log(np.maximum(pred, 1e-300)) - np.log(truth)) ** 2)))


def score(curve: Curve, bootstrap: int) -> dict[str, float]:
    points = [Point(float(a), float(b)) for a, b in zip(curve.fx, curve.fy, strict=True)]
    report = fit_points(
        points, FitOptions(bootstrap=bootstrap, predict_at=tuple(float(v) for v in curve.hx))
    )
    preds = report.predictions
    loss = np.array([p.loss for p in preds])
    inf = float("inf")
    lo = np.array([(p.interval or [0, 0])[0] or 0.0 for p in preds])
    hi = np.array([(p.interval or [0, 0])[1] or inf for p in preds])
    inside = (curve.hy >= lo) & (curve.hy <= hi)
    forms = {f.name: f for f in FORMS}
    out = {
        "inside": float(inside.sum()),
        "held": float(len(curve.hy)),
        "width": float(np.median(np.log(np.maximum(hi, 1e-300) / np.maximum(lo, 1e-300)))),
        "ours": rmse(loss, curve.hy),
        "last": rmse(np.full(len(curve.hy), curve.fy[-1]), curve.hy),
    }
    for label, name in (("m4", "m4"), ("m2", "power-law-plus-constant")):
        form = forms.get(name)
        fitted = (
            form.fit(curve.fx, curve.fy, None)
            if form and len(curve.fx) > form.min_points - 1
            else None
        )
        out[label] = rmse(fitted(curve.hx), curve.hy) if fitted is not None else np.nan
    return out


def _score(args: tuple[Curve, int]) -> dict[str, float]:
    with np.errstate(all="ignore"):
        return score(*args)


def table(curves: list[Curve], scores: Iterable[dict[str, float]], verbose: bool) -> None:
    by: dict[str, list[dict[str, float]]] = defaultdict(list)
    for curve, s in zip(curves, scores, strict=True):
        by[curve.domain].append(s)
        if verbose:
            print(
                f"  {curve.domain:18s} {curve.name:40s} ours {s['ours']:.4f} m4 {s['m4']:.4f} "
                f"last {s['last']:.4f} inside {int(s['inside'])}/{int(s['held'])}"
            )
    head = (
        f"{'domain':18s} {'curves':>6s} {'cover90':>7s} {'width':>6s} "
        f"{'ours mean/median':>17s} {'M4 mean/median':>15s} {'M2 mean/median':>15s} "
        f"{'last mean/median':>17s} {'catastrophic':>12s}"
    )
    print(head)
    for domain, rows in sorted(by.items()):

        def mm(key: str, rows: list[dict[str, float]] = rows) -> str:
            v = np.array([r[key] for r in rows])
            return f"{np.nanmean(v):.4f}/{np.nanmedian(v):.4f}"

        held = sum(r["held"] for r in rows)
        bad = sum(r["ours"] > CATASTROPHIC and r["last"] < NAIVE_GOOD for r in rows)
        print(
            f"{domain:18s} {len(rows):6d} {sum(r['inside'] for r in rows) / held:7.3f} "
            f"{np.median([r['width'] for r in rows]):6.3f} {mm('ours'):>17s} {mm('m4'):>15s} "
            f"{mm('m2'):>15s} {mm('last'):>17s} {bad:12d}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"folder of both sets' files (default: lang from {LANG_DATA}, lcdb from {LCDB_DATA})",
    )
    parser.add_argument("--sets", default="lang,lcdb")
    parser.add_argument("--cuts", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    sets = args.sets.split(",")
    curves: list[Curve] = []
    if "lang" in sets:
        curves += load_lang(args.data or LANG_DATA, args.cuts)
    if "lcdb" in sets:
        lcdb = args.data or LCDB_DATA
        curves += load_lcdb(lcdb, 8) + load_lcdb(lcdb, 4)
    with multiprocessing.Pool(args.workers) as pool:
        scores = pool.map(_score, [(c, args.bootstrap) for c in curves], chunksize=4)
    table(curves, scores, args.verbose)
    print(
        "goals: coverage 0.80-0.95; 0 catastrophic curves; mean and median rmse <= M4's on "
        "every domain; mean <= the last value's on LCDB log-loss (BB, BIG-Bench, is "
        "step-like: no smooth law is expected to do well)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
