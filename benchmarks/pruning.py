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
- real NMT curves: the 5 translation learning curves of that benchmark as one slot of 5
  competitors (read from shared/data/learning-curves where it is there);
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

--prior adds v2 with a prior of real curves' forecast errors (prior_errors.csv, written
by --make-prior from the recorded study and the LM and NMT curves of a published
benchmark), --matched v2 with each synthetic study's family's other studies as its prior
(the best prior there can be); --breakdown prints, per family, the oracle's compute, how
often the winner is behind at a rung, a forecast-limited bound and where v2's compute goes
(docs/pruning.md, "How far from the goals").

--seeds N replays the synthetic families with N seeds per arm: each family's replicate
studies grouped N at a time as the seeds of one study (so seeds differ as much as the
generator's studies do), through the rule across seeds (arms, the product's default) and
the per-seed rule (each seed's slot on its own, the rule before arms), and prints the
compute spent and the share of cells (a study's (data size, model size) for a sweep, its
data size for a model-size grid) whose mean-chosen rate (or size) of the unpruned study
survives with every seed, and whose pick from the pruned study's results is the same.

Usage: python benchmarks/pruning.py [--studies 10] [--workers 2,6] [--only NAME] [--v1]
       [--prior] [--matched] [--rungs R,R,...] [--calibrate-after N] [--breakdown]
       [--record RUN_DIR] [--make-prior [LANG_CSV]] [--seeds N]
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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

os.environ.setdefault("OMP_NUM_THREADS", "1")

from scalingstudy.fitting import FitOptions, fit_points
from scalingstudy.fitting.report import FitReport
from scalingstudy.pruning import Competitor, Prune, decide
from scalingstudy.pruning.arms import mean
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
    trials' curves and finals, stopped trials). A decision lapses when its rival fails
    (a run without a final: it diverged), and the stopped trial is trained on from where
    it stopped (its checkpoint), as `scheduling.lapsed_prunes` has the runner do. The step
    at which each trial that stays stopped was stopped."""
    queue = plan_order(runs)[::-1]
    running: dict[str, tuple[Run, float, int]] = {}  # trial -> (run, start, next point)
    done: dict[str, Run] = {}
    stopped: dict[str, int] = {}
    against: dict[str, str | None] = {}
    resume: dict[str, int] = {}  # lapsed trial -> the index of the point it stopped at
    now = 0.0
    while queue or running:
        while queue and len(running) < workers:
            r = queue.pop()
            if r.trial in resume:  # go on from the checkpoint at the step it stopped
                i = resume.pop(r.trial)
                step = r.points[i].step if i >= 0 else 0
                running[r.trial] = (r, now - step * r.cost_per_step, i + 1)
            else:
                running[r.trial] = (r, now, 0)
        name = min(running, key=lambda n: (_due(running[n]), n))
        r, start, k = running[name]
        now = _due(running[name])
        if k + 1 >= len(r.points):
            del running[name]
            done[name] = r
            if r.final is None:  # failed: the decisions against it lapse
                for n in sorted(n for n in stopped if against.get(n) == name):
                    lapsed = _by_name(runs)[n]
                    resume[n] = max(
                        (i for i, q in enumerate(lapsed.points) if q.step <= stopped[n]), default=-1
                    )
                    del stopped[n]
                    queue.append(lapsed)
        else:
            running[name] = (r, start, k + 1)
        table = [_competitor(d, d.end, "finished") for d in done.values()]
        table += [_competitor(d, stopped[n], "stopped") for n, d in _by_name(runs).items()
                  if n in stopped]  # fmt: skip
        # A running trial's curve: the evaluations that have arrived (before its next).
        table += [_competitor(x, _arrived(x, i), "running") for x, _, i in running.values()]
        for prune in rule(table, 0):
            if prune.trial in running:
                x, _, i = running.pop(prune.trial)
                stopped[prune.trial] = _arrived(x, i)
                against[prune.trial] = prune.against
    return stopped


def _arrived(run: Run, following: int) -> int:
    """The step of a running trial's last evaluation that has arrived (0: none yet)."""
    return run.points[following - 1].step if following > 0 else 0


def _due(entry: tuple[Run, float, int]) -> float:
    """When the next evaluation of a running trial arrives."""
    r, start, k = entry
    return start + r.points[k].step * r.cost_per_step


def _by_name(runs: Sequence[Run]) -> dict[str, Run]:
    return {r.trial: r for r in runs}


def product_rule(
    settings: PruningSpec, lowest: bool, prior: Sequence[dict[float, float]] | None = None,
    across_seeds: bool = True,
) -> Rule:  # fmt: skip
    return lambda competitors, _step: decide(
        competitors, settings, final_is_lowest=lowest, prior=prior, across_seeds=across_seeds
    )


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


# ---------------------------------------------------------------- where compute goes
#: Why a loser kept running past the first rung, in the order a reason is read.
REASONS = ("best bound", "size neighbour", "uncalibrated", "not confident")


class Tagged:
    """The product's rule, and for every running trial at every decision the reason it
    was not stopped (`REASONS`), read with the rule's own parts: a breakdown of where
    the compute goes (``--breakdown``)."""

    def __init__(
        self, settings: PruningSpec, lowest: bool, prior: Sequence[dict[float, float]] = ()
    ) -> None:
        self.settings, self.lowest, self.prior = settings, lowest, prior
        self.tags: dict[tuple[str, int], str] = {}

    def __call__(self, competitors: Sequence[Competitor], _step: int) -> list[Prune]:
        from statistics import NormalDist

        from scalingstudy.pruning import rule as r

        out = decide(competitors, self.settings, final_is_lowest=self.lowest, prior=self.prior)
        stopped = {p.trial for p in out}
        everyone = sorted(competitors, key=lambda c: c.trial)
        z = NormalDist().inv_cdf(self.settings.confidence)
        ctx = r._Context(
            z, self.settings, self.lowest, r.study_calibration(everyone, self.settings, self.prior)
        )
        bounds = {c.trial: r.pessimistic(c, ctx) for c in everyone}
        for t in everyone:
            if not t.running or t.trial in stopped or (rung := r._rung(t, self.settings)) is None:
                continue
            rivals = r._rivals(t, everyone, bounds, self.settings)
            slot = [c for c in everyone if c.data_size == t.data_size and c.seed == t.seed]
            if self.settings.compare_model_sizes and len(rivals) < len(slot) - 1:
                why = "size neighbour"
            else:
                known = [b for c in rivals if (b := bounds[c.trial]) is not None]
                own = bounds[t.trial]
                best = min(known, key=lambda b: (b.value, b.trial)) if known else None
                if best is None or (
                    own is not None and (own.value, own.trial) <= (best.value, best.trial)
                ):
                    why = "best bound"
                elif ctx.calibration.bounds(rung[0], self.settings.confidence) is None:
                    why = "uncalibrated"
                else:
                    why = "not confident"
            self.tags[(t.trial, t.curve.last_step or 0)] = why
        return out


def breakdown(family: Family, settings: PruningSpec, workers: int) -> dict[str, float]:
    """Shares of the unpruned compute: the slots' winners, the losers before the first
    rung, the losers after it that were stopped later (latency), and those kept running
    by each reason in `REASONS`."""
    tagged = Tagged(settings, family.final_is_lowest)
    stopped: dict[str, int] = {}
    for study in sorted({r.study for r in family.runs}):
        stopped.update(replay([r for r in family.runs if r.study == study], tagged, workers))
    winners = _winners(family)
    first = settings.rungs[0]
    full = sum(r.cost_per_step * r.end for r in family.runs)
    out = dict.fromkeys(("winners", "losers < first rung", *REASONS, "untagged"), 0.0)
    for r in family.runs:
        end = stopped.get(r.trial, r.end)
        if r.trial in winners:
            out["winners"] += r.cost_per_step * end
            continue
        prev = 0
        for p in r.points:
            if p.step > end:
                break
            span = (p.step - prev) * r.cost_per_step
            if prev < first * r.budget:
                out["losers < first rung"] += span
            else:
                out[tagged.tags.get((r.trial, prev), "untagged")] += span
            prev = p.step
    return {k: v / full for k, v in out.items()}


def _winners(family: Family) -> set[str]:
    slots: dict[tuple[int, ...], list[Run]] = {}
    for r in family.runs:
        slots.setdefault(_slot(r, family), []).append(r)
    out = set()
    for runs in slots.values():
        finals = [
            (r.final, r.trial) for r in runs if r.final is not None and math.isfinite(r.final)
        ]
        if finals:
            out.add(min(finals)[1])
    return out


def oracle(family: Family, first: float, keep_neighbours: bool) -> float:
    """The compute of a rule that knows every final: each slot's winner (and, with
    ``keep_neighbours``, the winner's neighbouring model sizes, which the model-size law
    reads) to its end, every other trial to ``first`` of its budget."""
    keep = _winners(family)
    if keep_neighbours:
        by = _by_name(family.runs)
        for w in list(keep):
            sizes = sorted(
                {r.model_size for r in family.runs if _slot(r, family) == _slot(by[w], family)}
            )
            i = sizes.index(by[w].model_size)
            near = {sizes[j] for j in (i - 1, i + 1) if 0 <= j < len(sizes)}
            keep |= {
                r.trial
                for r in family.runs
                if _slot(r, family) == _slot(by[w], family)
                and r.model_size in near
                and r.learning_rate == by[w].learning_rate
            }
    spent = sum(
        r.cost_per_step * (r.end if r.trial in keep else min(r.end, first * r.budget))
        for r in family.runs
    )
    return spent / sum(r.cost_per_step * r.end for r in family.runs)


def forecast_limited(family: Family, rungs: Sequence[float], confidence: float) -> float:
    """A bound for any rule that judges forecasts: every slot's winner is known and
    finished (its final exact), the forecasts' errors at each rung are known exactly (the
    family's own backtests, pooled), and a loser is stopped at the first rung where its
    forecast times exp(lower quantile of those errors) is above the winner's final."""
    from scalingstudy.pruning.calibration import backtest, forecast_at, lower_quantile, rung_step

    errors: dict[float, list[float]] = {r: [] for r in rungs}
    for r in family.runs:
        if r.final is not None and math.isfinite(r.final):
            for rung, e in backtest(Curve(r.points, r.budget), r.final, tuple(rungs), 5):
                errors[rung].append(e)
    low = {k: lower_quantile(tuple(sorted(v)), confidence) for k, v in errors.items() if len(v) > 1}
    winners, by_slot = _winners(family), {}
    for r in family.runs:
        if r.trial in winners:
            by_slot[_slot(r, family)] = r.final
    spent = 0.0
    for r in family.runs:
        end = r.end
        best = by_slot.get(_slot(r, family))
        if r.trial not in winners and best is not None:
            for rung in rungs:
                fc = forecast_at(Curve(r.points, r.budget), rung_step(rung, r.budget), 5)
                diverged = any(p.validation_loss is None or not math.isfinite(p.validation_loss)
                               for p in r.points if p.step <= rung * r.budget)  # fmt: skip
                if diverged or (
                    fc is not None and rung in low and fc.mean * math.exp(low[rung]) > best
                ):
                    end = min(end, rung_step(rung, r.budget))
                    break
        spent += r.cost_per_step * end
    return spent / sum(r.cost_per_step * r.end for r in family.runs)


def leaders(family: Family, at: float) -> float:
    """The share of slots whose eventual winner is not the best curve at ``at`` of the
    budget (its evaluation there, smoothed over its last three): curves that cross later."""
    slots: dict[tuple[int, ...], list[Run]] = {}
    for r in family.runs:
        slots.setdefault(_slot(r, family), []).append(r)
    winners, crossed, total = _winners(family), 0, 0
    for runs in slots.values():
        now = []
        for r in runs:
            seen = [
                p.validation_loss
                for p in r.points
                if p.step <= at * r.budget
                and p.validation_loss is not None
                and math.isfinite(p.validation_loss)
            ]
            if seen:
                now.append((statistics.mean(seen[-3:]), r.trial))
        if len(now) > 1 and any(t in winners for _, t in now):
            total += 1
            crossed += min(now)[1] not in winners
    return crossed / max(total, 1)


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


def score(
    family: Family, rule: Rule | Callable[[int], Rule], workers: int,
    bases: dict[int, FitReport | None], per_study: bool = False,
) -> Score:  # fmt: skip
    """The rule replayed on every study of the family, ``workers`` trials at once
    (``per_study``: ``rule`` makes each study's rule from its number)."""
    stopped: dict[str, int] = {}
    for study in sorted({r.study for r in family.runs}):
        own = cast("Callable[[int], Rule]", rule)(study) if per_study else cast(Rule, rule)
        stopped.update(replay([r for r in family.runs if r.study == study], own, workers))
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


# ---------------------------------------------------------------- a prior of real curves
#: The published benchmark's curves, in the shared folder beside the repository.
LANG = Path(__file__).resolve().parents[2] / "shared/data/learning-curves/benchmark.lang.csv"
PRIOR = DATA / "prior_errors.csv"
#: The fractions of the budget the prior's errors are measured at.
GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))


def lang_curves(path: Path) -> dict[str, tuple[Curve, float]]:
    """The LM and NMT learning curves of the scaling benchmark of Alabdulmohsin,
    Neyshabur and Zhai ("Revisiting Neural Scaling Laws in Language and Vision", NeurIPS
    2022, its benchmark.lang.csv): whole curves (fitted and held-out points, duplicate
    rows dropped), each with its budget (its last x, examples seen) and its final (the
    loss there). Its BIG-Bench curves are left out: few-shot error rates, not a loss."""
    by: dict[tuple[str, str], dict[int, float]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["Domain"] in ("LM", "NMT"):
                key = (row["Domain"].lower(), row["Model"])
                by.setdefault(key, {})[round(float(row["Seen Examples"]))] = float(row["Loss"])
    out = {}
    for (domain, model), values in sorted(by.items()):
        steps = sorted(values)
        points = tuple(CurvePoint(step=s, validation_loss=values[s]) for s in steps)
        out[f"{domain}:{model}"] = (Curve(points, steps[-1]), values[steps[-1]])
    return out


def make_prior(lang: Path) -> int:
    """Every real curve's backtest (`calibration.backtest`: log(final) - log(forecast)
    from its curve up to each fraction in GRID) into prior_errors.csv: the recorded CPU
    study's 54 curves (source cpu) and the benchmark's 5 LM and 5 NMT curves."""
    from scalingstudy.pruning.calibration import backtest

    curves: list[tuple[str, str, Curve, float]] = []
    recorded = recorded_family()
    assert recorded is not None
    for r in recorded.runs:
        if r.final is not None:
            curves.append(("cpu", r.trial, Curve(r.points, r.budget), r.final))
    for name, (curve, final) in lang_curves(lang).items():
        curves.append((name.split(":")[0], name, curve, final))
    n = 0
    with PRIOR.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("source", "curve", "fraction", "log_error"))
        for source, name, curve, final in curves:
            errors = backtest(curve, final, GRID, 5)
            n += bool(errors)
            writer.writerows((source, name, g, f"{e:.5f}") for g, e in errors)
    return n


def prior_errors(rungs: Sequence[float], exclude: Sequence[str] = ()) -> list[dict[float, float]]:
    """Per real curve of prior_errors.csv (but the sources in ``exclude``), its error at
    each of ``rungs``: the one measured at the largest grid fraction at or below the rung
    (an earlier forecast, a wider error); none below the grid."""
    by: dict[tuple[str, str], dict[float, float]] = {}
    with PRIOR.open() as f:
        for row in csv.DictReader(f):
            if row["source"] not in exclude:
                by.setdefault((row["source"], row["curve"]), {})[float(row["fraction"])] = float(
                    row["log_error"]
                )
    out = []
    for _, at in sorted(by.items()):
        mine = {}
        for rung in rungs:
            below = [g for g in GRID if g <= rung + 1e-9 and g in at]
            if below:
                mine[rung] = at[below[-1]]
        if mine:
            out.append(mine)
    return out


def nmt_family() -> Family | None:
    """The 5 translation learning curves of the scaling benchmark (lang_curves) as one
    slot of 5 competitors (architectures in place of learning rates; loss against
    examples seen, doubling, 10-11 points; one cost per example): real curves that cross.
    Its 5 LM curves are left out: each is normalised by its own first loss, so they do
    not compete."""
    if not LANG.exists():
        return None
    nmt = [(n, c, f) for n, (c, f) in lang_curves(LANG).items() if n.startswith("nmt:")]
    runs = [
        Run(0, name, 1, 1, 0, float(k + 1), curve.points, curve.step_budget or 0, final, 1.0)
        for k, (name, curve, final) in enumerate(nmt)
    ]
    return Family("real NMT curves", "rates", tuple(runs), 0.0, False, False)


# ---------------------------------------------------------------- table
def families(studies: int) -> list[Family]:
    out = [f for f in (recorded_family(), nmt_family()) if f is not None]
    out += [
        rate_family("rates-crossing", "constant", studies),
        rate_family("rates-annealed", "annealed", studies),
        rate_family("rates-plateau-diverge", "plateau", studies),
        sizes_family(studies),
    ]
    return out


def matched_prior(family: Family, rungs: Sequence[float]) -> Callable[[int], Rule]:
    """An upper bound on what any prior calibration could give: each study's rule gets,
    as its prior, the backtests of the same family's other studies (the recorded family,
    one study: its own trials, in-sample)."""
    from scalingstudy.pruning.calibration import backtest

    errors = {
        r.trial: dict(backtest(Curve(r.points, r.budget), r.final, tuple(rungs), 5))
        for r in family.runs
        if r.final is not None and math.isfinite(r.final)
    }
    studies = {r.trial: r.study for r in family.runs}
    several = len(set(studies.values())) > 1

    def make(study: int) -> Rule:
        prior = [e for t, e in sorted(errors.items()) if e and (studies[t] != study or not several)]
        settings = PruningSpec(enabled=True, rungs=list(rungs),
                               compare_model_sizes=family.compare_model_sizes)  # fmt: skip
        return product_rule(settings, family.final_is_lowest, prior)

    return make


def print_breakdown(args: argparse.Namespace, settings: PruningSpec) -> int:
    """Per family: the oracle's compute at first rungs 0.1 and 0.2, the slots whose
    winner is not ahead at those points, and where the product rule's compute goes."""
    for family in families(args.studies):
        if args.only and args.only not in family.name:
            continue
        own = settings.model_copy(update={"compare_model_sizes": family.compare_model_sizes})
        sizes = family.compare_model_sizes
        line = f"{family.name}: oracle at 0.1 / 0.2: {oracle(family, 0.1, False):.0%} / "
        line += f"{oracle(family, 0.2, False):.0%}"
        if sizes:
            line += " (keeping the best size's neighbours "
            line += f"{oracle(family, 0.1, True):.0%} / {oracle(family, 0.2, True):.0%})"
        line += f"; winner not ahead at 0.1 / 0.2 / 0.5: {leaders(family, 0.1):.0%} / "
        line += f"{leaders(family, 0.2):.0%} / {leaders(family, 0.5):.0%} of slots"
        print(line, flush=True)
        early = [0.1, 0.15, *[r for r in own.rungs if r > 0.15]]
        print(f"  forecast-limited bound (rungs from {own.rungs[0]} / from 0.1): "
              f"{forecast_limited(family, own.rungs, own.confidence):.0%} / "
              f"{forecast_limited(family, early, own.confidence):.0%}", flush=True)  # fmt: skip
        for w in (int(x) for x in args.workers.split(",")):
            parts = breakdown(family, own, w)
            print(f"  {w} workers: " + ", ".join(f"{k} {v:.0%}" for k, v in parts.items())
                  + f" (total {sum(parts.values()):.0%})", flush=True)  # fmt: skip
    return 0


# ---------------------------------------------------------------- several seeds
def seeded(family: Family, n: int) -> Family:
    """The family's replicate studies grouped ``n`` at a time as one study's seeds:
    seed k of study s is replicate s * n + k (left-over replicates are dropped)."""
    whole = (max(r.study for r in family.runs) + 1) // n * n
    runs = [replace(r, study=r.study // n, seed=r.study % n) for r in family.runs]
    return replace(family, runs=tuple(r for r in runs if r.study * n + r.seed < whole))


def _cell(r: Run, family: Family) -> tuple[tuple[int, ...], float]:
    """The cell the product picks in and the arm picked: the rate of a (data size,
    model size) of a sweep, the model size of a data size of a grid."""
    if family.compare_model_sizes:
        return (r.study, r.data_size), float(r.model_size)
    return (r.study, r.data_size, r.model_size), r.learning_rate or 0.0


def picks(family: Family, stopped: Collection[str]) -> dict[tuple[int, ...], float]:
    """Each cell's pick from the results the product keeps (succeeded trials: a pruned
    one has no loss): the lowest mean log loss over seeds for a rate, mean loss for a
    model size (`best_rate_per_cell`, `best_from_cells`)."""
    return {
        cell: min(means, key=lambda a: (means[a], a))
        for cell, means in _means(family, stopped).items()
    }


def _means(family: Family, stopped: Collection[str]) -> dict[tuple[int, ...], dict[float, float]]:
    """Each cell's arms' means over their succeeded seeds (log losses for rates)."""
    finals: dict[tuple[int, ...], dict[float, list[float]]] = {}
    for r in family.runs:
        if r.trial not in stopped and r.final is not None and math.isfinite(r.final):
            cell, arm = _cell(r, family)
            finals.setdefault(cell, {}).setdefault(arm, []).append(r.final)
    log = not family.compare_model_sizes
    return {c: {a: mean(v, log, optimistic=True) or 0.0 for a, v in arms.items()}
            for c, arms in finals.items()}  # fmt: skip


def _arms(family: Family) -> dict[tuple[tuple[int, ...], float], list[str]]:
    """Each (cell, arm)'s trials, one per seed."""
    out: dict[tuple[tuple[int, ...], float], list[str]] = {}
    for r in family.runs:
        out.setdefault(_cell(r, family), []).append(r.trial)
    return out


def seeds_row(family: Family, settings: PruningSpec, across: bool, workers: int) -> str:
    """One line of --seeds: the family replayed by the rule across seeds or per seed."""
    rule = product_rule(settings, family.final_is_lowest, across_seeds=across)
    stopped: dict[str, int] = {}
    for study in sorted({r.study for r in family.runs}):
        stopped.update(replay([r for r in family.runs if r.study == study], rule, workers))
    spent = sum(r.cost_per_step * stopped.get(r.trial, r.end) for r in family.runs)
    full = sum(r.cost_per_step * r.end for r in family.runs)
    truth, after, arms = picks(family, ()), picks(family, stopped), _arms(family)
    alive = sum(all(t not in stopped for t in arms[(c, a)]) for c, a in truth.items())
    same = sum(after.get(c) == a for c, a in truth.items())
    unpruned = _means(family, ())
    lost = sum(
        after.get(c) != a
        and unpruned[c].get(after.get(c) or -1.0, math.inf) - unpruned[c][a] > family.noise
        for c, a in truth.items()
    )
    split = sum(0 < sum(t in stopped for t in ts) < len(ts) for ts in arms.values())
    label = f"{'across seeds' if across else 'per seed'}, {workers} workers"
    n = len(truth)
    return (f"{family.name:22} {label:22} {spent / full:8.0%} {alive:>7}/{n:<6} "
            f"{same:>5}/{n:<4} {lost:>10} {split:>10} {len(stopped):>7}")  # fmt: skip


def print_seeds(args: argparse.Namespace, settings: PruningSpec) -> int:
    """Across seeds against per seed, on the synthetic families with ``args.seeds``
    seeds per arm."""
    print(f"{'family':22} {'rule':22} {'compute':>8} {'pick survives':>14} "
          f"{'same pick':>10} {'lost>noise':>10} {'split arms':>10} {'pruned':>7}")  # fmt: skip
    workers = [int(x) for x in args.workers.split(",")]
    for family in families(args.studies):
        if family.name.startswith(("recorded", "real")) or (args.only or "") not in family.name:
            continue
        family = seeded(family, args.seeds)
        own = settings.model_copy(update={"compare_model_sizes": family.compare_model_sizes})
        for across, w in itertools.product((True, False), workers):
            print(seeds_row(family, own, across, w), flush=True)
        print(f"{'':22} {len(family.runs)} trials, {args.seeds} seeds an arm", flush=True)
    return 0


def _row(family: str, rule: str, s: Score) -> None:
    print(f"{family:22} {rule:20} {s.compute:8.0%} {s.kept:>6}/{s.slots:<5} "
          f"{s.kept / max(s.slots, 1):4.0%} {s.lost_beyond_noise:>10} {s.pruned:>7} "
          f"{s.stop:>6} {s.beta_g:>10} {s.beta_p:>10}", flush=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=10, help="studies per synthetic family")
    parser.add_argument("--workers", default="2,6", help="trials at once, comma-separated")
    parser.add_argument("--only", help="families whose name contains this")
    parser.add_argument("--calibrate-after", type=int, help="minCalibrationTrials")
    parser.add_argument("--v1", action="store_true", help="also the uncalibrated rule (v1)")
    parser.add_argument("--record", type=Path, help="thin RUN_DIR's curves into curves.csv")
    parser.add_argument(
        "--make-prior",
        nargs="?",
        const=LANG,
        type=Path,
        metavar="LANG_CSV",
        help="write the real curves' backtests (prior_errors.csv)",
    )
    parser.add_argument("--prior", action="store_true", help="also v2 with a prior of real curves")
    parser.add_argument(
        "--matched",
        action="store_true",
        help="also v2 with the family's other studies as its prior",
    )
    parser.add_argument("--rungs", help="rungs, comma-separated (default: the spec's)")
    parser.add_argument(
        "--breakdown", action="store_true", help="where the compute goes, and the bounds"
    )
    parser.add_argument("--seeds", type=int, help="N seeds an arm: across seeds vs per seed")
    args = parser.parse_args(argv)
    if args.record:
        print(f"recorded {record(args.record)} trials into {CURVES}")
        return 0
    if args.make_prior:
        print(f"wrote {make_prior(args.make_prior)} curves' backtests into {PRIOR}")
        return 0
    started = time.monotonic()
    settings = PruningSpec(enabled=True)
    if args.calibrate_after:
        settings = settings.model_copy(update={"min_calibration_trials": args.calibrate_after})
    if args.rungs:
        settings = settings.model_copy(update={"rungs": [float(x) for x in args.rungs.split(",")]})
    if args.breakdown:
        return print_breakdown(args, settings)
    if args.seeds:
        return print_seeds(args, settings)
    print(f"settings: rungs {settings.rungs}, confidence {settings.confidence}, "
          f"minEvaluations {settings.min_evaluations}, minCalibrationTrials "
          f"{settings.min_calibration_trials}")  # fmt: skip
    print(f"{'family':22} {'rule':20} {'compute':>8} {'winner kept':>16} {'lost>noise':>10} "
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
        if args.prior:
            # A family of real curves is judged without its own curves in the prior.
            own_source = {"recorded (CPU study)": "cpu", "real NMT curves": "nmt"}
            leave_out = (own_source[family.name],) if family.name in own_source else ()
            prior = prior_errors(own.rungs, leave_out)
            rules.insert(1, ("real prior", product_rule(own, family.final_is_lowest, prior)))
        if args.v1:
            rules.insert(1, ("v1", product_rule(v1, family.final_is_lowest)))
        for (label, rule), w in itertools.product(rules, workers):
            _row(family.name, f"{label}, {w} workers", score(family, rule, w, bases))
            if label == "v2" and args.matched:
                m = score(family, matched_prior(family, own.rungs), w, bases, per_study=True)
                _row(family.name, f"matched prior, {w}", m)
        print(f"{'':22} {len(family.runs)} trials; evaluation noise {family.noise:.2g}; "
              f"{family.kind}")  # fmt: skip
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
