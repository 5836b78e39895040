"""Trial planning: a spec becomes the list of trials, each with a stable name.

Names are derived only from the study name and the trial's values (data size, model
size, seed, swept learning rate), never from a position in a list, so every process
(local runner, each operator restart) computes the same names, and a spec edit that
adds, removes or reorders a value renames no other trial; the operator creates a Job
only when one with that name is absent, which is what makes restarts free of
duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from scalingstudy.spec import ScalingStudySpec

MAX_NAME = 63
Record = TypeVar("Record")


@dataclass(frozen=True, order=True)
class Trial:
    """One training run: a model size on a nested data subset with one seed."""

    data_size: int
    model_size: int
    seed: int
    name: str
    #: The swept learning rate of this trial (None: no sweep).
    learning_rate: float | None = field(default=None, compare=False)

    @property
    def coordinates(self) -> tuple[int, int, int]:
        return (self.data_size, self.model_size, self.seed)


#: Room kept after every name for a pod's index (``-127``: trainer.nodes is at most 128),
#: so a trial's name is the same whatever its number of pods.
INDEX_ROOM = len("-127")


def rate_code(learning_rate: float) -> str:
    """A learning rate as name characters: its shortest decimal form (``repr``), one to
    one, with ``.`` as ``p`` and an exponent's ``-`` as ``m`` (0.003 -> ``0p003``, 1e-05
    -> ``1em05``): a trial is named by the rate it runs, not by a position in a list."""
    return repr(float(learning_rate)).replace(".", "p").replace("-", "m").replace("+", "")


def trial_name(
    study: str,
    data_size: int,
    model_size: int,
    seed: int,
    learning_rate: float | None = None,
    *,
    pods: int = 1,
) -> str:
    """A DNS-1123 label, unique per trial within a study, made of the trial's values only:
    data size, model size, seed and the swept learning rate (None: no sweep). Editing a
    list (insert, remove, reorder) renames no other trial, and a result is never taken
    for a value it did not run.

    The topology (``pods``, from trainer.nodes) does not change what a trial computes
    (the batch is global, split over the processes), so it is not part of the name: every
    name is already fit for several pods (the Indexed Job's pod hostnames ``<name>-<i>``,
    the headless Service of the same name): it starts with a letter and leaves room for
    the index. A study name that does not allow that as is (it starts with a digit, or is
    long) is shortened, and a hash of the full name keeps names distinct. ``pods`` is
    accepted for callers that pass it and changes nothing.
    """
    del pods  # identity does not depend on topology (see above)
    swept = "" if learning_rate is None else f"-l{rate_code(learning_rate)}"
    suffix = f"d{data_size}-m{model_size}{swept}-s{seed}"
    limit = MAX_NAME - INDEX_ROOM
    name = f"{study}-{suffix}"
    if len(name) <= limit and study[:1].isalpha() and "." not in study:
        return name
    digest = hashlib.sha256(study.encode()).hexdigest()[:8]
    room = limit - len(suffix) - len(digest) - 2
    if room < 1:
        # Absurd coordinates (very large sizes): hash everything, still deterministic.
        full = hashlib.sha256(name.encode()).hexdigest()
        return f"t-{full[: limit - 2]}"
    prefix = study[:room].replace(".", "-").rstrip("-") or "s"
    if not prefix[0].isalpha():
        prefix = f"s{prefix[: room - 1]}".rstrip("-")
    return f"{prefix}-{digest}-{suffix}"


def plan_trials(study: str, spec: ScalingStudySpec) -> list[Trial]:
    """Every trial of the study, smallest data sizes first (so early fits come soon); an
    IsoFLOP study's smallest budgets first."""
    rates = spec.learning_rate_values()
    if spec.design.isoflop:
        from scalingstudy.planning.isoflop import isoflop_plan

        cells = [(c.data_size, c.model_size) for c in isoflop_plan(spec).cells]
    else:
        cells = [(d, m) for d in spec.data_sizes.sizes() for m in spec.model_sizes.sizes()]
    return [
        Trial(data, model, seed, trial_name(study, data, model, seed, lr), lr)
        for data, model in cells
        for lr in rates
        for seed in range(spec.seeds)
    ]


@dataclass(frozen=True)
class Plan:
    """A study's trials in plan order, computed once per pass; what is recorded for a trial
    no longer planned (a spec change) is kept but not relevant."""

    trials: tuple[Trial, ...]
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(t.name for t in self.trials))

    @classmethod
    def of(cls, study: str, spec: ScalingStudySpec) -> Plan:
        return cls(tuple(plan_trials(study, spec)))

    def __iter__(self) -> Iterator[Trial]:
        return iter(self.trials)

    def __len__(self) -> int:
        return len(self.trials)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def relevant(self, records: Mapping[str, Record]) -> dict[str, Record]:
        """The records of planned trials."""
        return {name: r for name, r in records.items() if name in self.names}
