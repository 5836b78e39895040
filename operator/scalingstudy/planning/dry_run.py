"""What a study will do before it spends anything (`scalingstudy plan`, `run --dry-run`):
the grid, how many trials, which start first, and what they are expected to cost. Pure:
the same design decision the executors make, from the records given (none, or an
earlier run's), with nothing started."""

from __future__ import annotations

from collections.abc import Mapping

from scalingstudy.planning.design import design
from scalingstudy.planning.isoflop import isoflop_plan
from scalingstudy.planning.plan import plan_trials
from scalingstudy.planning.scheduling import schedule
from scalingstudy.render.table import short
from scalingstudy.spec import ScalingStudy, ScalingStudySpec
from scalingstudy.status import TrialRecord
from scalingstudy.words import device_hours, plural

SHOWN = 12  # trial names listed before "and N more"


def _listed(names: list[str]) -> str:
    more = len(names) - SHOWN
    return ", ".join(names[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def _budget_line(spec: ScalingStudySpec, seconds: float | None, unit: str) -> str:
    """The budget in the unit the trials request; an older gpuHours on a CPU study says
    what it caps."""
    if seconds is None:
        return "budget: none"
    legacy = spec.design.budget is not None and spec.design.budget.gpu_hours is not None
    note = (
        " (gpuHours caps CPU-hours: the trials request no GPUs)" if legacy and unit == "CPU" else ""
    )
    return f"budget: {device_hours(seconds, unit)}{note}"


def _isoflop_lines(spec: ScalingStudySpec, trials: int) -> list[str]:
    """Each budget's model sizes and data sizes, and the pairs out of dataSizes' bounds."""
    iso = isoflop_plan(spec)
    k = spec.design.flops_per_parameter_per_item
    lines = [f"IsoFLOP: C = {k:g} N D, data sizes within [{spec.data_sizes.sizes()[0]}, "
             f"{spec.data_sizes.sizes()[-1]}]"]  # fmt: skip
    for c in sorted({cell.compute for cell in iso.cells}):
        cells = [x for x in iso.cells if x.compute == c]
        pairs = [f"m{x.model_size} ({short(x.parameters, 3)} params) x {x.data_size}"
                 for x in cells]  # fmt: skip
        lines.append(f"  C = {c:.3g}: " + ", ".join(pairs))
    lines += [f"  skipped: {s}" for s in iso.skipped]
    lines.append(f"trials: {trials} ({plural(spec.seeds, 'seed')} per pair)")
    return lines


def describe(study: ScalingStudy, records: Mapping[str, TrialRecord], workers: int) -> list[str]:
    """The dry run's lines. ``workers``: how many trials run at once (the local runner's
    --workers, or the spec's parallelism)."""
    name, spec = study.metadata.name, study.spec
    data, models = spec.data_sizes.sizes(), spec.model_sizes.sizes()
    rates = spec.learning_rate_values()
    grid = plan_trials(name, spec)
    lines = [
        f"study {name}: task {spec.task.name}, metric {spec.metric.name}",
        f"data sizes ({len(data)}): {', '.join(str(d) for d in data)}",
        f"model sizes ({len(models)}): {', '.join(str(m) for m in models)}",
        f"grid: {len(data)} x {len(models)} x {plural(spec.seeds, 'seed')}"
        + (f" x {len(rates)} learning rates" if len(rates) > 1 else "")
        + f" = {plural(len(grid), 'trial')}",
    ]
    if spec.design.isoflop:
        lines[1:4] = _isoflop_lines(spec, len(grid))
    done = {t for t, r in records.items() if r.status == "Succeeded"}
    if records:
        lines.append(f"earlier results: {len(done)} succeeded, {len(records) - len(done)} failed "
                     "(failed trials run again)")  # fmt: skip
    kept = {t: r for t, r in records.items() if t in done}
    chosen = design(name, spec, kept, set(), {})
    plan_names = [t.name for t in chosen.plan]
    start = schedule(chosen.plan, kept, set(), workers, spec.max_failed_trials).start
    strategy = spec.design.strategy
    lines.append(
        f"design {strategy}: plans {plural(len(plan_names), 'trial')} now"
        + (" (more once results arrive)" if chosen.more else "")
    )
    if chosen.fit_needed is not None:
        lines.append(f"  next: a fit through data size {chosen.fit_needed} decides the window")
    first = [t.name for t in start]
    waiting = [n for n in plan_names if n not in done and n not in set(first)]
    if first:
        lines.append(f"starts first ({workers} at a time): {_listed(first)}"
                     + (f"; then {len(waiting)} more planned" if waiting else ""))  # fmt: skip
    else:
        lines.append("starts nothing: every planned trial has a result")
    status = chosen.status
    unit = status.device.upper()
    budget = status.budget_device_seconds
    lines.append(_budget_line(spec, budget, unit))
    if spec.design.adaptive and spec.design.share < 1:
        lines.append(
            f"computeShare: {spec.design.share:g} (from the sixth data size on, none starts "
            "that would take the study past this share of the grid's compute once the "
            "largest data size's loss can be predicted instead)"
        )
    if status.grid_device_seconds is not None:
        lines.append(
            f"expected cost of the full grid: {device_hours(status.grid_device_seconds, unit)} "
            f"(spent so far {device_hours(status.device_seconds, unit)}; from the earlier "
            "results' durations)"
        )
    else:
        lines.append("expected cost: unknown until trials finish (no earlier durations to "
                     "price the rest from)")  # fmt: skip
    if spec.fit.target_loss is not None:
        lines.append(f"target loss: {short(spec.fit.target_loss, 4)}")
    lines.append("nothing was run (dry run)")
    return lines
