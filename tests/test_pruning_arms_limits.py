"""Where arms across seeds must not prune (review of issue 38's seeds change): the
product's winner when rates and sizes are both swept, an adaptive design's one-seed arms,
a seed an edit removed, a bound that is not positive; and where they must (the product's
geometric mean, a chain of arms, a diverged seed). Real curves through the real rule."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from scalingstudy.cluster import pruning_pass as pp
from scalingstudy.cluster.observe import JobState
from scalingstudy.fitting.points import Point, best_from_cells, best_rate_per_cell, cells
from scalingstudy.planning.plan import trial_name
from scalingstudy.pruning import decide
from scalingstudy.pruning.arms import mean
from scalingstudy.pruning.decision import judged_seeds
from scalingstudy.records import TrialRecord
from scalingstudy.spec import parse_spec
from tests.test_cluster_pruning import _curve
from tests.test_pruning import ON
from tests.test_pruning_seeds import RATES_ONLY, done, settled, trial


def product_pick(finals: dict[tuple[int, float], list[float]]) -> tuple[int, float]:
    """The (model size, rate) the product keeps at data size 1000, as the fit picks it."""
    rows = [((1000.0, float(m)), lr, v) for (m, lr), vs in finals.items() for v in vs]
    best = best_rate_per_cell(rows)
    points = [Point(1000.0, v, float(m), str(i)) for (m, lr), vs in finals.items()
              if best[(1000.0, float(m))] == lr for i, v in enumerate(vs)]  # fmt: skip
    (pick,) = best_from_cells(cells(points))
    size = int(pick.model_size or 0)
    return size, best[(1000.0, float(size))]


def test_with_rates_and_sizes_swept_the_products_winner_is_not_pruned_across_sizes() -> None:
    """Size 16's rate by mean log loss is 0.02 (finals 0.20, 0.70: its size's loss is
    0.45), though rate 0.01's mean loss is 0.40; size 4 at rate 0.01 settles at 0.42 and
    is the product's winner. No arm of size 16 bounds size 16's loss: sizes do not
    compete here, rates still do."""
    finals = {(16, 0.01): [0.40, 0.40], (16, 0.02): [0.20, 0.70], (8, 0.01): [0.50, 0.50],
              (8, 0.02): [0.55, 0.55], (4, 0.02): [0.60, 0.60]}  # fmt: skip
    table = [done(f"m{m}-{lr}-s{s}", v, lr=lr, seed=s, model=m)
             for (m, lr), vs in finals.items() for s, v in enumerate(vs)]  # fmt: skip
    table += [trial(f"m4-0.01-s{s}", settled(0.42, 2 + s), 900, lr=0.01, seed=s, model=4)
              for s in (0, 1)]  # fmt: skip
    assert product_pick({**finals, (4, 0.01): [0.42, 0.42]}) == (4, 0.01)
    assert not any(p.trial.startswith("m4-0.01") for p in decide(table, ON, seeds=range(2)))
    # A hopeless rate of one size still loses to its own size's rates.
    table.append(trial("m8-0.05-s0", settled(0.9, 5), 900, lr=0.05, seed=0, model=8))
    table.append(trial("m8-0.05-s1", settled(0.9, 6), 900, lr=0.05, seed=1, model=8))
    out = decide(table, ON, seeds=range(2))
    assert [p.trial for p in out] == ["m8-0.05-s0", "m8-0.05-s1"], out


def test_an_adaptive_design_prunes_with_one_seed_only() -> None:
    """An adaptive design gives extra seeds to the sizes it keeps, later: no pass could see
    a size's mean over its seeds (a rival judged on a lucky seed 0 stopped the size the
    results pick). Pruning there needs seeds: 1, refused otherwise with the reason."""
    doc = {"task": {"name": "teacher-student"}, "dataSizes": {"values": [100, 200, 400]},
           "modelSizes": {"values": [4, 8, 16, 32]},
           "design": {"strategy": "adaptive", "pruning": {"enabled": True}}}  # fmt: skip
    assert judged_seeds(parse_spec(doc)) == ([0], False)
    with pytest.raises(ValueError, match=r"needs seeds: 1.*got seeds 2"):
        parse_spec({**doc, "seeds": 2})
    assert parse_spec({**doc, "seeds": 2, "design": {"strategy": "adaptive"}}).seeds == 2


def test_a_seed_the_spec_no_longer_plans_is_no_part_of_any_arm_on_the_cluster() -> None:
    """seeds edited from 3 to 2: status keeps seed 2's result, which would pull the
    rival's mean to 0.30 and stop the product's pick (0.30 < the planned 0.40)."""
    spec = parse_spec({"task": {"name": "teacher-student"},
                       "dataSizes": {"values": [100, 200, 400]}, "modelSizes": {"values": [4]},
                       "learningRates": {"values": [0.1, 1.0]}, "seeds": 2,
                       "design": {"pruning": {"enabled": True}}})  # fmt: skip

    def name(seed: int, rate: float) -> str:
        return trial_name("s", 100, 4, seed, rate)

    records = {name(s, 0.1): TrialRecord(trial=name(s, 0.1), data_size=100, model_size=4,
                                         seed=s, learning_rate=0.1, status="Succeeded",
                                         loss=loss)
               for s, loss in ((0, 0.40), (1, 0.40), (2, 0.10))}  # fmt: skip
    live = [JobState(trial=name(s, 1.0), name=name(s, 1.0), phase="active",
                     coordinates=(100, 4, s), learning_rate=1.0, uid=f"u{s}")
            for s in (0, 1)]  # fmt: skip
    flat = [0.30 + 0.0001 * (12 - i) for i in range(12)]
    curves = {j.trial: _curve(*flat) for j in live}
    assert pp.judge("s", spec, live, records, curves) == []
    del records[name(0, 0.1)]  # a rival arm without a planned seed bounds nothing
    assert pp.judge("s", spec, live, records, curves) == []


def test_a_value_an_edit_removed_is_no_rival_on_the_cluster_running_or_recorded() -> None:
    """Rate 0.01 was removed from the spec: its finished record and its still-running Job
    (deleted by this pass, after pruning ran) are no one's rival; rate 1.0 runs on."""
    doc = {"task": {"name": "teacher-student"}, "dataSizes": {"values": [100, 200, 400]},
           "modelSizes": {"values": [4]}, "learningRates": {"values": [0.1, 1.0]},
           "design": {"pruning": {"enabled": True}}}  # fmt: skip
    spec = parse_spec(doc)
    gone, kept = trial_name("s", 100, 4, 0, 0.01), trial_name("s", 100, 4, 0, 1.0)
    job = JobState(trial=kept, name=kept, phase="active", coordinates=(100, 4, 0),
                   learning_rate=1.0, uid="u1")  # fmt: skip
    rival = JobState(trial=gone, name=gone, phase="active", coordinates=(100, 4, 0),
                     learning_rate=0.01, uid="u0")  # fmt: skip
    record = TrialRecord(trial=gone, data_size=100, model_size=4, seed=0, learning_rate=0.01,
                         status="Succeeded", loss=0.1)  # fmt: skip
    curves = {kept: _curve(*[0.9 + 0.0001 * (12 - i) for i in range(12)]),
              gone: _curve(*[0.1 + 0.0001 * (12 - i) for i in range(12)])}  # fmt: skip
    assert pp.judge("s", spec, [job], {gone: record}, curves) == []
    assert pp.judge("s", spec, [job, rival], {}, curves) == []
    planned = parse_spec({**doc, "learningRates": {"values": [0.01, 0.1, 1.0]}})
    assert [p.trial for p in pp.judge("s", planned, [job], {gone: record}, curves)] == [kept]


def test_a_bound_that_is_not_positive_has_no_log_mean() -> None:
    assert mean([-0.01, 1.0], True, optimistic=True) == 0.0  # may still win
    assert mean([-0.01, 1.0], True) is None  # bounds nothing
    assert mean([0.25, 1.0], True) == 0.5 and mean([0.25, 1.0], False) == 0.625


def test_rates_are_compared_by_the_products_geometric_mean() -> None:
    """The rival's finals 0.2 and 0.8: geometric mean 0.4, arithmetic 0.5; a rate that
    settles at 0.45 loses by the product's rule (mean log loss), though not by the
    arithmetic mean."""
    table = [done("a-s0", 0.2, lr=0.01, seed=0), done("a-s1", 0.8, lr=0.01, seed=1),
             trial("b-s0", settled(0.45, 2), 900, lr=0.1, seed=0),
             trial("b-s1", settled(0.45, 3), 900, lr=0.1, seed=1)]  # fmt: skip
    out = decide(table, RATES_ONLY)
    assert [p.trial for p in out] == ["b-s0", "b-s1"] and "geometric-mean" in out[0].message


def test_no_arm_is_stopped_against_an_arm_stopped_in_the_same_decision() -> None:
    """Three rates, two running behind a finished one: each stopped arm names a rival
    that goes on (the last arm standing is never stopped)."""
    table = [done("a-s0", 0.30, lr=0.01, seed=0), done("a-s1", 0.30, lr=0.01, seed=1),
             trial("b-s0", settled(0.50, 2), 900, lr=0.1, seed=0),
             trial("b-s1", settled(0.50, 3), 900, lr=0.1, seed=1),
             trial("c-s0", settled(0.80, 4), 900, lr=1.0, seed=0),
             trial("c-s1", settled(0.80, 5), 900, lr=1.0, seed=1)]  # fmt: skip
    out = {p.trial: p.against for p in decide(table, RATES_ONLY)}
    assert set(out) >= {"b-s0", "b-s1"} and out["b-s0"] == "a-s0", out
    assert all(against not in out for against in out.values()), out


def test_a_diverged_seed_may_report_its_best_evaluation_so_its_arm_is_read_both_ways() -> None:
    """A custom trainer on the SDK's callbacks reports the best finite evaluation even
    after a NaN: arm a's seed 0 reached 0.25 before diverging, its seed 1 settles at 0.33;
    with 0.25 its geometric mean (0.287) is below b's (0.305): a is not stopped."""
    table = [done("b-s0", 0.30, lr=0.03, seed=0), done("b-s1", 0.31, lr=0.03, seed=1),
             trial("a-s0", lambda s: 0.24 + 5.0 / s if s < 500 else math.nan, 600,
                   lr=0.01, seed=0),
             trial("a-s1", settled(0.33, 4), 600, lr=0.01, seed=1)]  # fmt: skip
    assert decide(table, RATES_ONLY) == []
    # Had it diverged above b's mean, the arm cannot win either way.
    table[2] = trial("a-s0", lambda s: 0.6 + 5.0 / s if s < 500 else math.nan, 600,
                     lr=0.01, seed=0)  # fmt: skip
    assert [p.trial for p in decide(table, RATES_ONLY)] == ["a-s0", "a-s1"]


def test_whether_sizes_compete_across_seeds_is_the_specs_not_what_is_present() -> None:
    """With rates swept, sizes do not compete even while only one rate of each size is
    present (the others pruned, failed or queued: the cluster and the runner see that
    differently); a study without a sweep compares them."""
    table = [done(f"m16-s{s}", 0.30, lr=0.01, seed=s, model=16) for s in (0, 1)]
    table += [trial(f"m4-s{s}", settled(0.9, s), 900, lr=0.01, seed=s, model=4) for s in (0, 1)]
    table += [done(f"m8-s{s}", 0.5, lr=0.01, seed=s, model=8) for s in (0, 1)]
    assert decide(table, ON, seeds=range(2), rates_swept=True) == []
    stopped = decide(table, ON, seeds=range(2), rates_swept=False)
    assert [p.trial for p in stopped] == ["m4-s0", "m4-s1"]


def test_a_failed_size_between_is_no_neighbour_of_the_best() -> None:
    """The model-size law reads the best size's nearest sizes with a result: with size 8
    failed, size 4 is size 16's neighbour and is kept (one seed, no sweep)."""
    from scalingstudy.pruning import Competitor
    from scalingstudy_sdk.curve import Curve

    table = [done("m16", 0.3, lr=None, seed=0, model=16),
             Competitor("m8", 1000, 8, 0, None, Curve(), None, False),  # failed
             trial("m4", lambda s: 5.0 + 100 / s, 600, lr=None, seed=0, model=4)]  # fmt: skip
    assert decide(table, ON) == []
    table[1] = done("m8", 0.5, lr=None, seed=0, model=8)  # size 8 finished: 4 is no neighbour
    assert [p.trial for p in decide(table, ON)] == ["m4"]


def test_the_executors_take_the_rate_sweep_from_the_spec() -> None:
    """Through the operator's `judge`: two seeds, sizes 4 and 16 at one rate each present
    (the sweep's other rates not started): sizes do not compete, as the spec sweeps."""
    doc = {"task": {"name": "teacher-student"}, "dataSizes": {"values": [100, 200, 400]},
           "modelSizes": {"values": [4, 8, 16]}, "learningRates": {"values": [0.1, 1.0]},
           "seeds": 2, "design": {"pruning": {"enabled": True}}}  # fmt: skip
    spec = parse_spec(doc)
    assert judged_seeds(spec) == ([0, 1], True)
    records = {(n := trial_name("s", 100, m, s, 0.1)): TrialRecord(
        trial=n, data_size=100, model_size=m, seed=s, learning_rate=0.1, status="Succeeded",
        loss=loss) for m, loss in ((16, 0.1), (8, 0.2)) for s in (0, 1)}  # fmt: skip
    live = [JobState(trial=(n := trial_name("s", 100, 4, s, 0.1)), name=n, phase="active",
                     coordinates=(100, 4, s), learning_rate=0.1, uid=f"u{s}")
            for s in (0, 1)]  # fmt: skip
    curves = {j.trial: _curve(*[0.9 + 0.0001 * (12 - i) for i in range(12)]) for j in live}
    assert pp.judge("s", spec, live, records, curves) == []
    # Not vacuous: told the study sweeps no rates, the same competitors stop size 4.
    table = pp.competitors(live, records, curves)
    stopped = decide(table, spec.design.pruning, seeds=[0, 1], rates_swept=False)
    assert [p.trial for p in stopped] == [j.trial for j in live]


def _sizes_study() -> tuple[Any, Callable[[int, int], JobState], Callable[..., TrialRecord]]:
    spec = parse_spec({"task": {"name": "teacher-student"},
                       "dataSizes": {"values": [100, 200, 400]},
                       "modelSizes": {"values": [4, 8, 16]}, "seeds": 2,
                       "design": {"pruning": {"enabled": True}}})  # fmt: skip

    def job(m: int, s: int) -> JobState:
        n = trial_name("s", 100, m, s, None)
        return JobState(trial=n, name=n, phase="active", coordinates=(100, m, s),
                        learning_rate=None, uid=f"u{m}{s}")  # fmt: skip

    def rec(m: int, s: int, status: str, loss: float | None = None) -> TrialRecord:
        n = trial_name("s", 100, m, s, None)
        return TrialRecord(
            trial=n,
            data_size=100,
            model_size=m,
            seed=s,
            learning_rate=None,
            status=status,
            loss=loss,
        )  # type: ignore[arg-type]

    return spec, job, rec


def test_a_size_whose_every_seed_ended_without_a_result_is_judged_around() -> None:
    """Two passes through the operator's `judge` (review, round 5: the neighbour rule
    raised for an arm with no running and no finished seed): size 4 is stopped, then
    recorded Pruned; the next pass judges size 8 without failing; likewise with size 4
    failed in both seeds, or in one while its other seed has not started."""
    spec, job, rec = _sizes_study()
    flat = {4: 0.9, 8: 0.2}
    live = [job(m, s) for m in (4, 8) for s in (0, 1)]
    curves = {j.trial: _curve(*[flat[j.coordinates[1]] + 0.0001 * (12 - i) for i in range(12)])
              for j in live if j.coordinates is not None}  # fmt: skip
    records = {r.trial: r for r in [rec(16, s, "Succeeded", 0.1) for s in (0, 1)]}
    first = {p.trial for p in pp.judge("s", spec, live, records, curves)}
    assert first == {job(4, s).trial for s in (0, 1)}
    for ended in ([rec(4, s, "Pruned") for s in (0, 1)], [rec(4, s, "Failed") for s in (0, 1)],
                  [rec(4, 0, "Failed")]):  # fmt: skip
        now = {**records, **{r.trial: r for r in ended}}
        rest = [j for j in live if j.coordinates is not None and j.coordinates[1] == 8]
        assert pp.judge("s", spec, rest, now, curves) == []


def test_absurd_but_finite_losses_fail_no_pass() -> None:
    """A trainer's loss may blow up to 1e160 without going non-finite, or report a final
    of 1e60: forecasts, backtests and means must not overflow (it failed the operator's
    pass and `scalingstudy run`); such bounds bound nothing."""
    from scalingstudy.spec.pruning import PruningSpec

    exploding = trial("b", lambda s: 10.0 ** min(s / 3.0, 300.0), 600, lr=None, seed=0)
    assert decide([done("a", 0.3, lr=None, seed=0), exploding], ON) is not None
    strict = PruningSpec(enabled=True, confidence=0.999, min_calibration_trials=2)
    table = [done("f0", 0.3, lr=None, seed=0), done("fx", 1e60, lr=None, seed=0, model=16),
             trial("r", settled(0.5, 1), 600, lr=None, seed=0, model=4)]  # fmt: skip
    assert decide(table, strict) is not None
    sizes = [done(f"m4s{s}", 1e308, lr=None, seed=s, model=4) for s in (0, 1)]
    sizes += [trial(f"m8s{s}", settled(0.5, s), 600, lr=None, seed=s, model=8) for s in (0, 1)]
    assert decide(sizes, ON) == []
