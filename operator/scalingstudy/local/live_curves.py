"""What a local run sees of its running trials, decided without I/O: the study's best
validation loss so far (the progress line) and the competitors pruning compares (the
running trials' live curves beside the finished trials' curves and results)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from scalingstudy.planning.plan import Trial
from scalingstudy.spec import ScalingStudySpec
from scalingstudy.spec.design import PruningSpec
from scalingstudy.status import TrialRecord
from scalingstudy_sdk.curve import Curve

if TYPE_CHECKING:
    from scalingstudy.pruning import Competitor


def best_so_far(
    records: Iterable[TrialRecord], live: Mapping[str, Curve], metric: str
) -> float | None:
    """The study's lowest validation loss so far, for the progress line: the finished
    trials' results (a pruned trial's best evaluation) and the running trials' best
    evaluations. A study whose metric is not validation loss shows its results only
    (its curves are validation losses, another number)."""
    values = [
        r.loss if r.status == "Succeeded" else r.best_loss
        for r in records
        if metric == "validation_loss" or r.status == "Succeeded"
    ]
    if metric == "validation_loss":
        values += [c.best() for c in live.values()]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return min(finite) if finite else None


def pruning_settings(spec: ScalingStudySpec) -> PruningSpec | None:
    """The study's pruning settings when it is enabled, else None."""
    return spec.design.pruning if spec.design.pruning.enabled else None


def competitors(
    records: Iterable[TrialRecord], finished: Mapping[str, Curve],
    running: Mapping[str, Trial], live: Mapping[str, Curve],
) -> list[Competitor]:  # fmt: skip
    """What pruning compares: every running trial with its live curve, and every finished
    one with its curve and (succeeded) recorded loss."""
    from scalingstudy.pruning import Competitor

    out = [
        Competitor(t.name, t.data_size, t.model_size, t.seed, t.learning_rate,
                   live.get(t.name, Curve()), None, True)
        for t in running.values()
    ]  # fmt: skip
    out += [
        Competitor(r.trial, r.data_size, r.model_size, r.seed, r.learning_rate,
                   finished.get(r.trial, Curve()),
                   r.loss if r.status == "Succeeded" else None, False)
        for r in records
        if r.trial not in running
    ]  # fmt: skip
    return out
