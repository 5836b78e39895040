"""Is pruning safe? Replays whole training curves through the product's rule
(`scalingstudy.pruning.decide`: v2, calibrated on the study's finished trials; with
--v1 also the uncalibrated first version) and, for contrast, a median-stop rule that
compares current values (Katib's), and prints per family of curves and worker count:

- compute: the compute the pruned study spent against the unpruned one (steps x cost
  per step: seconds per step for the recorded study, model size for synthetic ones);
- kept: the fraction of slots whose winner (lowest final loss of the slot) survived;
- lost>noise: slots whose winner was stopped although its final was lower than every
  survivor's by more than the evaluation noise (the goal is none);
- stop@: the median point of their budget at which pruned trials were stopped;
- beta_g / beta_p: the fit (`fit_points` on the best-per-slot results, through
  `results.points_of` as the product makes them) of the pruned study, and whether each
  lies inside the unpruned study's interval.

A slot is where pruning compares trials: the (data size, seed) of a study whose rule
compares model sizes, and the (data size, model size, seed) of a learning-rate sweep.
A replay is a run: a study's trials start in plan order (smaller data sizes first, then
model size, rate, seed) on W workers; an evaluation arrives at its trial's start time
plus steps x cost per step, and the rule is asked after every evaluation with the whole
study (running trials' curves so far, finished trials' curves and finals, which
calibrate the forecasts, and the stopped ones). So the smaller data sizes finish first
and calibrate the larger ones, as in `scalingstudy run --workers W` or a cluster with
parallelism W.

Families:
- recorded: a real CPU study (benchmarks/data/pruning/study.yaml: a 3-rate sweep of the
  built-in teacher-student task, 6 data sizes x 3 widths, early stopping on), its curves
  read from the trials' own logs and thinned into benchmarks/data/pruning/curves.csv;
  the built-in trainer reports its lowest evaluation, so the rule is told so;
- rates-crossing, rates-annealed, rates-plateau-diverge: synthetic 3-rate sweeps where a
  higher rate starts faster and may end worse (crossing curves), under a constant or a
  cosine-annealed rate (whose end drops), with plateaus and divergences;
- sizes-overfit: a synthetic model-size grid whose larger models learn faster but
  overfit small data late (fast starters that end worse), so the best size grows with
  the data.

Goals (issue 38): at most 50% of the unpruned compute on 3-rate sweeps, at most 70% on
model-size grids, the winner kept in at least 95% of slots and in every slot whose
finals differ by more than the noise, the exponents inside the unpruned intervals.

Usage: python benchmarks/pruning.py [--studies 10] [--workers 2,6] [--only NAME] [--v1]
       [--calibrate-after N] [--record RUN_DIR]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from scalingstudy.fitting import FitOptions, fit_points
from scalingstudy.fitting.report import FitReport
from scalingstudy.pruning import Competitor, Prune, decide
from scalingstudy.results import points_of
from scalingstudy.spec.pruning import PruningSpec
from scalingstudy.status import TrialRecord
from scalingstudy_sdk.curve import Curve, CurvePoint, read_curve, thin

DATA = Path(__file__).resolve().parent / "data" / "pruning"
CURVES = DATA / "curves.csv"
#: Points kept of each recorded curve (the trainer evaluates 20 times per trial here).
RECORDED_POINTS = 60
FIT = FitOptions(bootstrap=200, confidence=0.9)


@dataclass(frozen=True)
class Run:
    """One trial's whole curve as it ran, and what it cost per step."""

    study: int
    """Which replicate study of the family (each synthetic study has seed 0)."""
    trial: str
    data_size: int
    model_size: int
    seed: int
    learning_rate: float | None
    points: tuple[CurvePoint, ...]
    budget: int
    final: float | None
    """Its result: the last evaluation, or the lowest for the built-in trainer."""
    cost_per_step: float

    @property
    def end(self) -> int:
        return self.points[-1].step


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "rates" or "sizes"
    runs: tuple[Run, ...]
    noise: float
    final_is_lowest: bool
    compare_model_sizes: bool


Rule = Callable[[Sequence[Competitor], int], list[Prune]]


# ---------------------------------------------------------------- replay
def _slot(run: Run, family: Family) -> tuple[int, ...]:
    if family.compare_model_sizes:
        return (run.study, run.data_size, run.seed)
    return (run.study, run.data_size, run.model_size, run.seed)


def _seen(run: Run, step: int) -> Curve:
    return Curve(tuple(p for p in run.points if p.step <= step), run.budget)


def _competitor(run: Run, at: int, state: str) -> Competitor:
    """``run`` as pruning sees it with its curve up to step ``at``; ``state`` is
    running, finished or stopped."""
    return Competitor(
        trial=run.trial, data_size=run.data_size, model_size=run.model_size, seed=run.seed,
        learning_rate=run.learning_rate, curve=_seen(run, at),
        final=run.final if state == "finished" else None, running=state == "running",
    )  # fmt: skip


def plan_order(runs: Sequence[Run]) -> list[Run]:
    """The order a study plans (and starts) its trials: smaller data sizes first, then
    model size, learning rate and seed, as `scalingstudy run` and the operator do."""
    return sorted(runs, key=lambda r: (r.data_size, r.model_size, r.learning_rate or 0.0,
                                       r.seed, r.trial))  # fmt: skip


def replay(runs: Sequence[Run], rule: Rule, workers: int) -> dict[str, int]:
    """One study as a run makes it: ``workers`` trials at once, started in plan order,
    each evaluation arriving at its start time + steps x cost per step (so a cheaper or
    earlier trial finishes first and calibrates the later ones); the rule is asked after
    every evaluation with the whole study (running trials' curves so far, finished
    trials' curves and finals, stopped trials). The step at which each stopped trial was
    stopped."""
    queue = plan_order(runs)[::-1]
    running: dict[str, tuple[Run, float, int]] = {}  # trial -> (run, start, next point)
    done: dict[str, Run] = {}
    stopped: dict[str, int] = {}
    now = 0.0
    while queue or running:
        while queue and len(running) < workers:
            r = queue.pop()
            running[r.trial] = (r, now, 0)
        name = min(running, key=lambda n: (_due(running[n]), n))
        r, start, k = running[name]
        now = _due(running[name])
        if k + 1 >= len(r.points):
            del running[name]
            done[name] = r
        else:
            running[name] = (r, start, k + 1)
        table = [_competitor(d, d.end, "finished") for d in done.values()]
        table += [_competitor(d, stopped[n], "stopped") for n, d in _by_name(runs).items()
                  if n in stopped]  # fmt: skip
        table += [_competitor(x, x.points[i].step, "running") for x, _, i in running.values()]
        for prune in rule(table, 0):
            if prune.trial in running:
                x, _, i = running.pop(prune.trial)
                stopped[prune.trial] = x.points[i].step
    return stopped


def _due(entry: tuple[Run, float, int]) -> float:
    """When the next evaluation of a running trial arrives."""
    r, start, k = entry
    return start + r.points[k].step * r.cost_per_step


def _by_name(runs: Sequence[Run]) -> dict[str, Run]:
    return {r.trial: r for r in runs}


def product_rule(settings: PruningSpec, lowest: bool) -> Rule:
    return lambda competitors, _step: decide(competitors, settings, final_is_lowest=lowest)


def median_rule(settings: PruningSpec, compare_model_sizes: bool) -> Rule:
    """Median stop (Katib): a running trial whose last evaluation is at a rung and whose
    best value so far is worse than the median of its slot's other trials' best values
    up to the same step is stopped (never the last one left)."""

    def slot(c: Competitor) -> tuple[int, ...]:
        size = () if compare_model_sizes else (c.model_size,)
        return (c.data_size, c.seed, *size)

    def rule(competitors: Sequence[Competitor], _step: int) -> list[Prune]:
        out: list[Prune] = []
        for c in competitors:
            budget, step = c.curve.step_budget or 0, c.curve.last_step
            if not c.running or step not in {math.floor(r * budget) for r in settings.rungs}:
                continue
            alive = [o for o in competitors if slot(o) == slot(c) and (o.running or o.final)]
            others = [_best_until(o.curve, step) for o in alive if o.trial != c.trial]
            values = [v for v in others if v is not None]
            own = c.curve.best()
            worse = bool(values) and (own is None or own > statistics.median(values))
            if worse and len(alive) > 1:
                out.append(Prune(c.trial, step, own, "median stop"))
        return out

    return rule


def _best_until(curve: Curve, step: int) -> float | None:
    return Curve(tuple(p for p in curve.points if p.step <= step)).best()


# ---------------------------------------------------------------- scoring
@dataclass(frozen=True)
class Score:
    compute: float
    slots: int
    kept: int
    lost_beyond_noise: int
    pruned: int
    stop: str
    """The median step at which pruned trials were stopped, as a share of the budget."""
    beta_g: str
    beta_p: str


def _fit(records: Sequence[TrialRecord]) -> FitReport | None:
    try:
        return fit_points(points_of(records), FIT)
    except Exception:
        return None


def _records(runs: Sequence[Run], stopped: dict[str, int]) -> list[TrialRecord]:
    return [
        TrialRecord(
            trial=r.trial, data_size=r.data_size, model_size=r.model_size, seed=r.seed,
            learning_rate=r.learning_rate,
            status="Pruned" if r.trial in stopped else "Succeeded",
            loss=None if r.trial in stopped else r.final,
        )
        for r in runs
        if (r.final is not None and math.isfinite(r.final)) or r.trial in stopped
    ]  # fmt: skip


def _inside(value: float | None, interval: Sequence[float | None] | None) -> bool:
    """The pruned study's exponent inside the unpruned study's interval (an open end
    bounds nothing); no exponent where the unpruned study has one is outside."""
    if value is None or not interval:
        return False
    lo, hi = interval
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _betas(base: FitReport | None, pruned: FitReport | None) -> tuple[bool, bool | None]:
    """beta_g inside; beta_p inside, or None where the unpruned study measures none."""
    if base is None:
        return True, None
    bp = base.model_size
    p_known = bp is not None and bp.beta is not None and bool(bp.beta_interval)
    if pruned is None:
        return False, False if p_known else None
    g = _inside(pruned.learning_curve.beta, base.learning_curve.beta_interval)
    pp = pruned.model_size
    p = _inside(pp.beta if pp else None, bp.beta_interval if bp else None) if p_known else None
    return g, p


def unpruned_fits(family: Family) -> dict[int, FitReport | None]:
    """Each study's fit with nothing pruned: what every rule is measured against."""
    studies = sorted({r.study for r in family.runs})
    return {k: _fit(_records([r for r in family.runs if r.study == k], {})) for k in studies}


def score(family: Family, rule: Rule, workers: int, bases: dict[int, FitReport | None]) -> Score:
    """The rule replayed on every study of the family, ``workers`` trials at once."""
    stopped: dict[str, int] = {}
    for study in sorted({r.study for r in family.runs}):
        stopped.update(replay([r for r in family.runs if r.study == study], rule, workers))
    spent = sum(r.cost_per_step * stopped.get(r.trial, r.end) for r in family.runs)
    full = sum(r.cost_per_step * r.end for r in family.runs)
    slots: dict[tuple[int, ...], list[Run]] = {}
    for r in family.runs:
        slots.setdefault(_slot(r, family), []).append(r)
    kept = lost = total = 0
    for runs in slots.values():
        finals = sorted(
            (r.final, r.trial) for r in runs if r.final is not None and math.isfinite(r.final)
        )
        if not finals:
            continue
        total += 1
        winner = finals[0][1]
        if winner not in stopped:
            kept += 1
            continue
        survivors = [f for f, t in finals if t not in stopped]
        if not survivors or survivors[0] - finals[0][0] > family.noise:
            lost += 1
    runs_of = _by_name(family.runs)
    at = [stopped[t] / runs_of[t].budget for t in stopped]
    stop = f"{statistics.median(at):.0%}" if at else "-"
    beta_g, beta_p = _betas_of(family, stopped, bases)
    return Score(spent / full, total, kept, lost, len(stopped), stop, beta_g, beta_p)


def _betas_of(
    family: Family, stopped: dict[str, int], bases: dict[int, FitReport | None]
) -> tuple[str, str]:
    """How many studies' pruned beta_g and beta_p lie inside the unpruned intervals."""
    inside_g = inside_p = studies = measured_p = 0
    for study in sorted({r.study for r in family.runs}):
        runs = [r for r in family.runs if r.study == study]
        cut = {r.trial: stopped[r.trial] for r in runs if r.trial in stopped}
        base = bases[study]
        pruned = _fit(_records(runs, cut)) if cut else base
        g, p = _betas(base, pruned)
        studies += 1
        inside_g += g
        inside_p += p is True
        measured_p += p is not None
    beta_p = f"{inside_p}/{measured_p}" if measured_p else "not measured"
    return f"{inside_g}/{studies}", beta_p


# ---------------------------------------------------------------- synthetic families
def _points(values: Sequence[float], steps: Sequence[int]) -> tuple[CurvePoint, ...]:
    return tuple(CurvePoint(step=s, validation_loss=v) for s, v in zip(steps, values, strict=True))


def _floor(data_size: int) -> float:
    """The data-limited loss of a synthetic study: beta_g = -0.3 with a floor."""
    return float(0.05 + 2.0 * data_size**-0.3)


def _rate_run(
    rng: random.Random, d: int, study: int, lr: float, shape: str, budget: int, evals: int
) -> tuple[Run, float]:
    """A trial of a synthetic rate sweep: progress in steps grows with the rate; a
    noise floor grows with the rate and, annealed, falls to zero at the budget."""
    steps = [round(budget * (k + 1) / evals) for k in range(evals)]
    floor, noise = _floor(d), 0.004 * _floor(d)
    start = rng.uniform(0.0, 0.15) * budget if shape == "plateau" and lr < 0.01 else 0.0
    speed, b = 5 * lr * rng.uniform(0.6, 1.6), rng.uniform(0.5, 1.0)
    floor_lr = rng.uniform(1.0, 4.0) * lr * floor
    diverge_at = (
        rng.choice(steps[len(steps) // 4 :])
        if shape == "plateau" and lr > 0.02 and rng.random() < 0.3
        else None
    )
    values = []
    for s in steps:
        cosine = 0.5 * (1 + math.cos(math.pi * s / budget))
        schedule = 0.3 + 0.7 * cosine if shape == "annealed" else 1.0
        progress = max(s - start, 0.0) * speed
        y = floor + 1.5 * floor * (1 + progress) ** -b + floor_lr * schedule
        y += rng.gauss(0.0, noise)
        values.append(math.nan if diverge_at is not None and s >= diverge_at else y)
    final = values[-1] if math.isfinite(values[-1]) else None  # a diverged trial failed
    name = f"r{study}-d{d}-l{lr:g}"
    return Run(study, name, d, 1, 0, lr, _points(values, steps), budget, final, 1.0), noise


def rate_family(name: str, shape: str, studies: int) -> Family:
    rng = random.Random(f"pruning-{name}")
    runs, noises = [], []
    for d in (1000, 2000, 4000, 8000, 16000, 32000):
        for study in range(studies):
            for lr in (0.003, 0.01, 0.03):
                run, noise = _rate_run(rng, d, study, lr, shape, 2000, 40)
                runs.append(run)
                noises.append(noise)
    return Family(name, "rates", tuple(runs), statistics.median(noises), False, False)


def sizes_family(studies: int) -> Family:
    """Model sizes 1..32 (cost per step = size) at 6 data sizes: a larger model falls
    faster but overfits late in proportion to size / data, so the best size grows."""
    rng = random.Random("pruning-sizes")
    budget, evals = 2000, 40
    steps = [round(budget * (k + 1) / evals) for k in range(evals)]
    runs, noises = [], []
    for d in (1000, 2000, 4000, 8000, 16000, 32000):
        for study in range(studies):
            for m in (1, 2, 4, 8, 16, 32):
                capacity = 0.6 * m**-0.5
                overfit = 0.5 * (m * 1000 / d) ** 0.7 * rng.uniform(0.7, 1.3)
                speed, b = 0.004 * m**0.5 * rng.uniform(0.7, 1.4), rng.uniform(0.4, 0.9)
                noise = 0.004 * (_floor(d) + capacity)
                values = [
                    _floor(d) + capacity + 1.5 * (1 + s * speed) ** -b
                    + overfit * capacity * (s / budget) ** 2 + rng.gauss(0.0, noise)
                    for s in steps
                ]  # fmt: skip
                noises.append(noise)
                runs.append(Run(study, f"m{study}-d{d}-m{m}", d, m, 0, None,
                                _points(values, steps), budget, values[-1], float(m)))  # fmt: skip
    return Family("sizes-overfit", "sizes", tuple(runs), statistics.median(noises), False, True)


# ---------------------------------------------------------------- recorded family
COLUMNS = ("trial", "data_size", "model_size", "seed", "learning_rate", "step_budget",
           "final", "step", "validation_loss", "seconds")  # fmt: skip


def record(run_dir: Path) -> int:
    """Thin the recorded study's curves (each trial's own log) into curves.csv."""
    finals = {}
    with (run_dir / "results.csv").open() as f:
        for row in csv.DictReader(f):
            finals[row["trial"]] = row
    rows = []
    for trial, row in sorted(finals.items()):
        curve = read_curve((run_dir / "logs" / f"{trial}.log").read_text().splitlines())
        for p in thin(curve.points, RECORDED_POINTS):
            rows.append([trial, row["data_size"], row["model_size"], row["seed"],
                         row["learning_rate"], curve.step_budget, _g(row["loss"]), p.step,
                         _g(p.validation_loss), p.seconds])  # fmt: skip
    DATA.mkdir(parents=True, exist_ok=True)
    with CURVES.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return len(finals)


def _g(value: str | float | None) -> str:
    """A loss to 7 significant digits (far below the evaluation noise)."""
    return "" if value in (None, "") else f"{float(value):.7g}"


def recorded_family() -> Family | None:
    if not CURVES.exists():
        return None
    by_trial: dict[str, list[dict[str, str]]] = {}
    with CURVES.open() as f:
        for row in csv.DictReader(f):
            by_trial.setdefault(row["trial"], []).append(row)
    runs = []
    for trial, rows in sorted(by_trial.items()):
        first = rows[0]
        points = tuple(
            CurvePoint(step=int(r["step"]), validation_loss=float(r["validation_loss"]),
                       seconds=float(r["seconds"]) if r["seconds"] else None)
            for r in rows
        )  # fmt: skip
        seconds = points[-1].seconds or float(points[-1].step)
        final = float(first["final"]) if first["final"] else None
        where = (int(first["data_size"]), int(first["model_size"]), int(first["seed"]))
        runs.append(Run(0, trial, *where, float(first["learning_rate"]), points,
                        int(first["step_budget"]), final, seconds / points[-1].step))  # fmt: skip
    return Family(
        "recorded (CPU study)", "rates+sizes", tuple(runs), _recorded_noise(runs), True, True
    )


def _recorded_noise(runs: Sequence[Run]) -> float:
    """The evaluation noise of the recorded curves: the median over curves of the
    spread of successive differences (/sqrt 2) of their last half."""
    spreads = []
    for r in runs:
        tail = [p.validation_loss or 0.0 for p in r.points[len(r.points) // 2 :]]
        diffs = [b - a for a, b in itertools.pairwise(tail)]
        if len(diffs) >= 2:
            spreads.append(statistics.median(abs(x) for x in diffs) * 1.4826 / math.sqrt(2))
    return statistics.median(spreads) if spreads else 0.0


# ---------------------------------------------------------------- table
def families(studies: int) -> list[Family]:
    out = [f for f in (recorded_family(),) if f is not None]
    out += [
        rate_family("rates-crossing", "constant", studies),
        rate_family("rates-annealed", "annealed", studies),
        rate_family("rates-plateau-diverge", "plateau", studies),
        sizes_family(studies),
    ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=10, help="studies per synthetic family")
    parser.add_argument("--workers", default="2,6", help="trials at once, comma-separated")
    parser.add_argument("--only", help="families whose name contains this")
    parser.add_argument("--calibrate-after", type=int, help="minCalibrationTrials")
    parser.add_argument("--v1", action="store_true", help="also the uncalibrated rule (v1)")
    parser.add_argument("--record", type=Path, help="thin RUN_DIR's curves into curves.csv")
    args = parser.parse_args(argv)
    if args.record:
        print(f"recorded {record(args.record)} trials into {CURVES}")
        return 0
    started = time.monotonic()
    settings = PruningSpec(enabled=True)
    if args.calibrate_after:
        settings = settings.model_copy(update={"min_calibration_trials": args.calibrate_after})
    print(f"settings: rungs {settings.rungs}, confidence {settings.confidence}, "
          f"minEvaluations {settings.min_evaluations}, minCalibrationTrials "
          f"{settings.min_calibration_trials}")  # fmt: skip
    print(f"{'family':22} {'rule':18} {'compute':>8} {'winner kept':>16} {'lost>noise':>10} "
          f"{'pruned':>7} {'stop@':>6} {'beta_g in':>10} {'beta_p in':>10}")  # fmt: skip
    workers = [int(w) for w in args.workers.split(",")]
    for family in families(args.studies):
        if args.only and args.only not in family.name:
            continue
        own = settings.model_copy(update={"compare_model_sizes": family.compare_model_sizes})
        v1 = own.model_copy(update={"min_calibration_trials": 1000})  # never calibrated
        bases = unpruned_fits(family)
        rules = [
            ("v2", product_rule(own, family.final_is_lowest)),
            ("median", median_rule(own, family.compare_model_sizes)),
        ]
        if args.v1:
            rules.insert(1, ("v1", product_rule(v1, family.final_is_lowest)))
        for (label, rule), w in itertools.product(rules, workers):
            s = score(family, rule, w, bases)
            name = f"{label}, {w} workers"
            print(f"{family.name:22} {name:18} {s.compute:8.0%} {s.kept:>6}/{s.slots:<5} "
                  f"{s.kept / max(s.slots, 1):4.0%} {s.lost_beyond_noise:>10} {s.pruned:>7} "
                  f"{s.stop:>6} {s.beta_g:>10} {s.beta_p:>10}", flush=True)  # fmt: skip
        print(f"{'':22} {len(family.runs)} trials; evaluation noise {family.noise:.2g}; "
              f"{family.kind}")  # fmt: skip
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
