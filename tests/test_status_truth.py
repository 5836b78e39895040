"""What status says is what holds (issue 26): refusals keep their own reasons and hold only
as long as their cause; a refused study still records its results; a fit that ran to no
answer is tried again, never stored as a fit, so the operator (fits in a child process)
and the local runner (in process) decide alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalingstudy.cluster.backoff import Backoff
from scalingstudy.cluster.fitproc import run_fit
from scalingstudy.cluster.reasons import ConditionReason, EventReason, Failure, Refusal, Stop
from scalingstudy.cluster.reconcile import decide
from scalingstudy.cluster.status_builder import (
    build_status,
    held_refusal,
    is_new_refusal,
    refused_status,
)
from scalingstudy.fitting import FitError, FitOptions, FitUnavailableError, Point, fit_points
from scalingstudy.fitting.report import FitReport
from scalingstudy.planning.design import design
from scalingstudy.planning.plan import Plan
from scalingstudy.results import stage_fit
from scalingstudy.spec import parse_spec
from scalingstudy.status import ScalingStudyStatus
from tests.design_loop import record

ROOT = Path(__file__).resolve().parents[1]
SPEC = parse_spec({
    "task": {"name": "simulated"}, "trainer": {"command": ["simulated"]},
    "dataSizes": {"values": [1000, 2000, 4000, 8000, 16000]},
    "modelSizes": {"values": [4, 16, 64]}, "fit": {"bootstrap": 40},
    "design": {"strategy": "adaptive"},
})  # fmt: skip


def loss(data_size: int, model_size: int) -> float:
    return 0.5 + 30 * data_size**-0.4 + 2 * model_size**-0.5


def conditions(status: ScalingStudyStatus) -> dict[str, tuple[str, str, str | None]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


def test_a_rejected_job_holds_its_generation_and_the_study_still_records_results() -> None:
    plan = Plan.of("s", SPEC)
    first, second = plan.trials[0], plan.trials[1]
    earlier = decide(plan, [], {}, [record(first, 1.0)], parallelism=2, max_failed=0, fit=None)
    running = build_status(earlier, 2, ScalingStudyStatus(), None, None, "t0")
    rejected = Stop(Refusal.JOB_REJECTED, "the API server refused the Job of trial x: bad")
    held = refused_status(running, 2, rejected, "t1")
    assert held is not None and held.results == running.results  # nothing lost
    assert conditions(held)["SpecValid"] == ("False", "JobRejected", rejected.message)
    assert conditions(held)["Failed"] == ("True", "JobRejected", rejected.message)
    assert refused_status(held, 2, rejected, "t2") is None  # said once
    assert not is_new_refusal(held, 2, rejected) and is_new_refusal(held, 3, rejected)
    # Held for this generation only, read back from its typed reason.
    assert held_refusal(held, 2) == rejected and held_refusal(held, 3) is None
    # A refused study keeps recording what its running Jobs finish.
    later = decide(plan, [], {r.trial: r for r in held.results}, [record(second, 0.9)],
                   parallelism=2, max_failed=0, fit=None)  # fmt: skip
    after = build_status(later, 2, held, None, None, "t3", refusal=held_refusal(held, 2))
    assert {r.trial for r in after.results} == {first.name, second.name}
    assert after.phase == "Failed" and conditions(after)["Failed"][1] == "JobRejected"


@pytest.mark.parametrize("kind", [Refusal.INVALID_SPEC, Refusal.FORBIDDEN])
def test_the_operators_own_checks_are_not_held_they_run_again_every_pass(kind: Refusal) -> None:
    status = refused_status(ScalingStudyStatus(), 4, Stop(kind, "spec.x: no"), "t0")
    assert status is not None and conditions(status)["SpecValid"][1] == kind
    assert held_refusal(status, 4) is None


def test_a_config_map_conflict_is_not_a_spec_problem() -> None:
    assert not Refusal.CONFIG_MAP_CONFLICT.waits_for_spec
    assert all(r.waits_for_spec for r in Refusal if r is not Refusal.CONFIG_MAP_CONFLICT)


def test_every_reason_is_listed_once_in_the_docs() -> None:
    """The status table of docs/cluster.md and the code's vocabulary stay in step."""
    readme = (ROOT / "docs" / "cluster.md").read_text()
    table = readme[readme.index("| condition or Event |") :]
    table = table[: table.index("\n\n")]
    for reason in [*Refusal, *Failure, *ConditionReason, *EventReason]:
        assert f"`{reason}`" in table, reason


def test_backoff_doubles_up_to_its_longest_and_forgets_on_success() -> None:
    b = Backoff(first=10, longest=35)
    assert b.wait("k", 0) is None
    assert [b.failed("k", 0), b.failed("k", 0), b.failed("k", 0)] == [10, 20, 35]
    assert b.wait("k", 30) == 5 and b.wait("k", 35) is None
    b.succeeded("k")
    assert b.failed("k", 100) == 10
    b.forget(("ns", "s"))
    b.failed(("ns", "s", 1000), 0)
    b.forget(("ns", "s"))
    assert b.wait(("ns", "s", 1000), 1) is None


def _records_through(stages: int) -> dict[str, object]:
    plan = Plan.of("s", SPEC)
    sizes = sorted({t.data_size for t in plan})[:stages]
    return {t.name: record(t, loss(t.data_size, t.model_size)) for t in plan
            if t.data_size in sizes}  # fmt: skip


def test_a_fit_that_ran_to_no_answer_is_not_stored_and_the_design_waits_for_it() -> None:
    records = _records_through(3)
    chosen = design("s", SPEC, records, set(), {})  # type: ignore[arg-type]
    needed = chosen.fit_needed
    assert needed is not None

    def unavailable(points: object, options: object) -> FitReport:
        raise FitUnavailableError("the fit took longer than 600 s")

    def unfittable(points: object, options: object) -> FitReport:
        raise FitError("m=1000: loss nan")

    with pytest.raises(FitUnavailableError):
        stage_fit(chosen.prefix, SPEC, needed, unavailable)
    # A fit the data cannot give is an answer: stored, empty.
    empty = stage_fit(chosen.prefix, SPEC, needed, unfittable)
    assert empty.beta is None and empty.data_size == needed
    # Without the fit the design waits: nothing of the next stage, and it asks again.
    assert chosen.more and needed not in {f.data_size for f in chosen.status.stage_fits}
    asked = design("s", SPEC, records, set(), {})  # type: ignore[arg-type]
    assert asked.fit_needed == needed


def test_the_operator_and_the_local_runner_decide_alike_from_the_same_results() -> None:
    """The same records through the operator's fitter (a child process) and the local
    runner's (in process) give the same stage fits and the same trials."""
    records = _records_through(3)
    decisions = []
    for fitter in (run_fit, fit_points):
        fits = {}
        for _ in range(6):
            chosen = design("s", SPEC, records, set(), fits)  # type: ignore[arg-type]
            if chosen.fit_needed is None:
                break
            fits[chosen.fit_needed] = stage_fit(chosen.prefix, SPEC, chosen.fit_needed, fitter)
        decisions.append(([t.name for t in chosen.plan], sorted(fits.items())))
    assert decisions[0] == decisions[1]
    assert len(decisions[0][1]) >= 1 and any(f.beta is not None for _, f in decisions[0][1])


def test_the_fit_child_reports_an_unfittable_input_as_an_answer_not_an_outage() -> None:
    with pytest.raises(FitError) as caught:
        run_fit([Point(1000, 4, float("nan"))], FitOptions())
    assert not isinstance(caught.value, FitUnavailableError)
    with pytest.raises(FitUnavailableError):
        run_fit([Point(d, 4, loss(d, 4)) for d in (1000, 2000, 4000, 8000)], FitOptions(),
                timeout=0.01)  # fmt: skip
