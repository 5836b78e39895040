"""Trial planning: a spec becomes the list of trials, each with a stable name.

Names are derived only from the study name and the trial's coordinates, so
every process (local runner, each operator restart) computes the same names;
the operator creates a Job only when one with that name is absent, which is
what makes restarts free of duplicates.
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


def trial_name(
    study: str,
    data_size: int,
    model_size: int,
    seed: int,
    rate: int | None = None,
    *,
    pods: int = 1,
) -> str:
    """A DNS-1123 label of at most 63 characters, unique per coordinates within a study
    (``rate``: the index of a swept learning rate).

    Long study names are shortened and a hash of the full name keeps them distinct. A
    trial of several ``pods`` also names its headless Service and, with each pod's index
    appended, the pods' hostnames: the name then starts with a letter, has no dot and
    leaves room for the index.
    """
    swept = "" if rate is None else f"-l{rate}"
    suffix = f"d{data_size}-m{model_size}{swept}-s{seed}"
    limit = MAX_NAME if pods == 1 else MAX_NAME - len(f"-{pods - 1}")
    name = f"{study}-{suffix}"
    hostname_safe = pods == 1 or (study[:1].isalpha() and "." not in study)
    if len(name) <= limit and hostname_safe:
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
    pods = spec.trainer.nodes
    if spec.design.isoflop:
        from scalingstudy.isoflop import isoflop_plan

        return [
            Trial(c.data_size, c.model_size, seed,
                  trial_name(study, c.data_size, c.model_size, seed,
                             None if lr is None else i, pods=pods), lr)
            for c in isoflop_plan(spec).cells
            for i, lr in enumerate(rates)
            for seed in range(spec.seeds)
        ]  # fmt: skip
    return [
        Trial(data, model, seed,
              trial_name(study, data, model, seed, None if lr is None else i, pods=pods), lr)
        for data in spec.data_sizes.sizes()
        for model in spec.model_sizes.sizes()
        for i, lr in enumerate(rates)
        for seed in range(spec.seeds)
    ]  # fmt: skip


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
