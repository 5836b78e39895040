"""Pruning across seeds: the unit that competes is an ARM, the trials of one (data size,
model size, learning rate) over every seed the study plans, because the product picks a
cell's learning rate by the lowest mean log loss over seeds (`best_rate_per_cell`) and a
data size's model size by the lowest mean loss over seeds (`best_from_cells`). Judging
each seed's slot on its own would stop a rate in some seeds only and leave its mean
resting on the others (biased), or stop the rate that wins on the mean.

The rule (rule.py) bounds each trial as it does for one seed; this module only
aggregates those bounds per arm and decides. Pure and deterministic: everything is
sorted, so the same inputs in any order give the same decision.

- An arm's optimistic final is the mean of its seeds' optimistic bounds (a finished
  seed: its recorded final; a running one: the rule's lower bound at its last rung).
  A rival arm's pessimistic final is the mean of its seeds' pessimistic bounds.
- An arm is judged only when every planned seed has a bound (running past the first rung
  with enough evaluations, or finished): a queued, failed or pruned seed has none. A
  rival arm counts only when every one of its seeds has a pessimistic bound.
- Pruned: its optimistic mean is above the best rival arm's pessimistic mean, and the
  mean of its finished seeds' finals alone is too (a pruned trial has no loss, so the
  product's mean of a pruned arm rests on its finished seeds). All its running seeds
  are stopped in the one decision.
- Means: over rates of one model size the product compares mean log loss (a geometric
  mean of the finals), over model sizes the mean loss; a rival is compared by its own.
- A diverged running seed: where the trainer reports its lowest evaluation, that lowest
  finite evaluation is its final (the loss will not come back); otherwise it fails (the
  product's mean leaves it out) or its result is that lowest evaluation (the SDK's
  callbacks report it), so the arm's optimistic mean is the lower of the two (an arm
  whose every seed fails cannot win: any counting rival arm stops it). It is not
  stopped on its own: a stopped seed has no bound, so its arm could not be judged again
  (its other seeds would run to their end), while a running one that will fail leaves the
  arm judgeable (benchmarks/pruning.py: stopping it saved no compute and split arms).
- Model sizes compete as arms only in a study that sweeps no rates (`_rivals`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from scalingstudy.pruning.decision import Competitor, Prune

ArmKey = tuple[int, int, float | None]
"""(data size, model size, learning rate)."""


@dataclass(frozen=True)
class SeedBound:
    """What the rule knows of one trial, for its arm's means."""

    competitor: Competitor
    pessimistic: float | None
    """Its worst plausible final (rule.pessimistic); None: it bounds nothing."""
    optimistic: float | None
    """Its best plausible final: its recorded final once finished, a running trial's
    lower bound at its last rung; None: it cannot be judged yet. A seed that ``fails``:
    its best finite evaluation (None before one)."""
    fails: bool = False
    """Diverged under a trainer not known to report its lowest evaluation: it fails
    (the product's mean leaves it out), or its result is its best evaluation (the SDK's
    callbacks report that): the arm's optimistic mean is the lower of the two."""


class Placed(Protocol):
    """Anything placed in the grid: a competitor, a trial's record."""

    @property
    def data_size(self) -> int: ...
    @property
    def model_size(self) -> int: ...
    @property
    def learning_rate(self) -> float | None: ...


def arm_of(c: Placed) -> ArmKey:
    """The arm a trial belongs to (its seeds are the arm's members)."""
    return (c.data_size, c.model_size, c.learning_rate)


def next_to_best(with_result: Iterable[int], size: int, best: int) -> bool:
    """Whether model size ``size`` is next to ``best`` among the sizes that can still end
    with a result (the two always count): the model-size law reads the continuous
    optimum from the best size's nearest sizes with a result, so those are kept."""
    sizes = sorted({*with_result, size, best})
    return abs(sizes.index(size) - sizes.index(best)) == 1


def _order(key: ArmKey) -> tuple[int, int, float]:
    return (key[0], key[1], -1.0 if key[2] is None else key[2])


def mean(values: Sequence[float], log: bool, optimistic: bool = False) -> float | None:
    """The mean the product compares: of log losses (as a geometric mean, so it reads
    as a loss) over rates, of losses over model sizes. A bound that is not positive has
    no log, and one that is not finite (absurd losses) no mean: an optimistic mean is
    then 0 (such an arm may still win), a pessimistic one None (it bounds nothing)."""
    if not all(math.isfinite(v) for v in values) or (log and any(v <= 0 for v in values)):
        return 0.0 if optimistic else None
    if log:
        return math.exp(math.fsum(math.log(v) for v in values) / len(values))
    return math.fsum(v / len(values) for v in values)  # no overflow on huge losses


@dataclass(frozen=True)
class Arm:
    key: ArmKey
    members: tuple[SeedBound, ...]
    """One per planned seed present, by seed."""
    complete: bool
    """Every planned seed has a trial here (queued ones have none)."""

    @property
    def name(self) -> str:
        d, m, lr = self.key
        rate = "" if lr is None else f", learning rate {lr:g}"
        seeds = len(self.members)
        return f"(data size {d}, model size {m}{rate}; {seeds} seed{'s' if seeds != 1 else ''})"

    def pessimistic(self, log: bool) -> float | None:
        """The mean of its seeds' pessimistic finals; None unless every seed has one."""
        values = [b.pessimistic for b in self.members]
        if not self.complete or any(v is None for v in values):
            return None
        return mean([v for v in values if v is not None], log)

    def optimistic(self, log: bool) -> float | None:
        """The mean of its seeds' optimistic finals, the lower of: diverged seeds left
        out (they fail; inf when every seed does) and counted at their best evaluation;
        None unless every seed that does not diverge has one."""
        if not self.complete or any(b.optimistic is None and not b.fails for b in self.members):
            return None
        sure = [b.optimistic for b in self.members if not b.fails and b.optimistic is not None]
        best = [b.optimistic for b in self.members if b.fails and b.optimistic is not None]
        means = [mean(sure, log, optimistic=True) if sure else math.inf]
        if best:
            means.append(mean(sure + best, log, optimistic=True))
        return min(m for m in means if m is not None)

    def finished(self, log: bool) -> float | None:
        """The mean of its finished seeds' finals: what the product's mean rests on once
        the others are pruned (they have no loss); None without a finished seed."""
        finals = [b.competitor.final for b in self.members if b.competitor.final is not None]
        return mean(finals, log, optimistic=True) if finals else None

    @property
    def running(self) -> list[Competitor]:
        return [b.competitor for b in self.members if b.competitor.running]


def arms(bounds: Sequence[SeedBound], seeds: Sequence[int]) -> list[Arm]:
    """The study's arms, sorted, of its planned ``seeds`` only (a seed an edit removed
    is out of the product's mean, so out of the arm's); an arm is complete once it has a
    trial of each (an adaptive design prunes only with one seed: `spec.pruning`)."""
    grouped: dict[ArmKey, dict[int, SeedBound]] = {}
    planned = set(seeds)
    for b in sorted(bounds, key=lambda b: b.competitor.trial):
        if b.competitor.seed in planned:
            grouped.setdefault(arm_of(b.competitor), {}).setdefault(b.competitor.seed, b)
    return [
        Arm(key, tuple(by_seed[s] for s in sorted(by_seed)), planned <= set(by_seed))
        for key, by_seed in sorted(grouped.items(), key=lambda kv: _order(kv[0]))
    ]  # fmt: skip


def _rivals(a: Arm, everyone: Sequence[Arm], compare_model_sizes: bool) -> list[Arm]:
    """An arm's rival arms: the other rates of its (data size, model size) and, where
    model sizes compete, the other arms of its data size, except for a model size next
    to the best one (by the arms' pessimistic mean loss), kept for the model-size law.
    The caller turns ``compare_model_sizes`` off for a study that sweeps rates: a size's
    loss is then the mean loss of the rate its mean log loss picks, which no one arm's
    bound bounds (a rate that is not the pick can have the lower mean loss)."""
    slot = [b for b in everyone if b.key[0] == a.key[0]]
    same_size = [b for b in slot if b.key[1] == a.key[1] and b.key != a.key]
    if not compare_model_sizes:
        return same_size
    known = [(v, _order(b.key), b.key[1]) for b in slot if (v := b.pessimistic(False)) is not None]
    resulting = (b.key[1] for b in slot if b.running or b.finished(False) is not None)
    if known and next_to_best(resulting, a.key[1], min(known)[2]):
        return same_size
    return [b for b in slot if b.key != a.key]


def _judge(a: Arm, rivals: Sequence[Arm], confidence: float) -> tuple[Arm, str] | None:
    """The rival arm ``a`` (running) cannot beat, and why; None where it may still win."""
    known = [(v, _order(r.key), r) for r in rivals
             if (v := r.pessimistic(r.key[1] == a.key[1])) is not None]  # fmt: skip
    if not known:
        return None
    best, order, rival = min(known, key=lambda k: (k[0], k[1]))
    log = rival.key[1] == a.key[1]
    own = a.pessimistic(log)
    if own is not None and (own, _order(a.key)) <= (best, order):
        return None  # the arm is the best bound: it is what the others meet
    low = a.optimistic(log)
    finished = a.finished(log)
    if low is None or low <= best or (finished is not None and finished <= best):
        return None
    which = "geometric-mean loss" if log else "mean loss"
    return rival, (
        f"cannot win its slot across seeds: arm {a.name}'s {which} is at least {low:.4g} "
        f"({confidence:.0%} lower bounds of its running seeds, finals of its finished "
        f"ones), above arm {rival.name}'s pessimistic {which} {best:.4g}"
    )


def _against(rival: Arm, seed: int) -> str:
    """The rival trial a pruned seed's decision names: the rival arm's same seed."""
    same = [b.competitor.trial for b in rival.members if b.competitor.seed == seed]
    return same[0] if same else rival.members[0].competitor.trial


def decide_arms(
    bounds: Sequence[SeedBound], seeds: Sequence[int], compare_model_sizes: bool,
    confidence: float,
) -> list[Prune]:  # fmt: skip
    """The running trials to stop: every running seed of each arm that cannot win, in
    trial-name order. An arm is never stopped in the same decision as the arm it loses
    to (where the two means of rates and sizes order arms differently, the rival is
    kept), so the last arm is never stopped."""
    everyone = arms(bounds, seeds)
    lost: dict[ArmKey, tuple[Arm, str]] = {}
    for a in everyone:
        if not a.running:  # nothing to stop (an arm all of whose seeds failed, say)
            continue
        judged = _judge(a, _rivals(a, everyone, compare_model_sizes), confidence)
        if judged is not None:
            lost[a.key] = judged
    changed = True
    while changed:  # a rival that is itself stopped here is kept running
        changed = False
        for key in sorted(lost, key=_order):
            rival = lost.get(key)
            if rival is not None and rival[0].key in lost:
                del lost[rival[0].key]
                changed = True
    out = [
        Prune(c.trial, c.curve.last_step or 0, c.curve.best(), why, _against(rival, c.seed))
        for a in everyone if a.key in lost
        for rival, why in [lost[a.key]]
        for c in a.running
    ]  # fmt: skip
    return sorted(out, key=lambda p: p.trial)
