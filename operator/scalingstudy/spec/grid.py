"""Size grids: the data sizes and model sizes a study trains, as a geometric range or
an explicit list."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    ConfigDict,
    Field,
    JsonValue,
    model_validator,
)

from scalingstudy.spec.base import (
    MAX_LIST_SIZES,
    SpecModel,
    cel,
)

# --------------------------------------------------------------------------- ranges
#
# How many sizes a geometric range gives is decided by closed-form comparisons that a CEL
# rule can write too (CEL has no logarithm, power or loop): the pydantic validators and
# the CRD's rules evaluate the same products in the same order, so `scalingstudy run` and
# the API server accept and refuse the same ranges (tests/cluster/test_spec_agreement.py).

#: Relative slack of "max reaches min x factor^k": a range ending on its grid stays one.
SLACK = 1.000000001


def _power(name: str, factor: str, times: int) -> str:
    return " * ".join([name, *[factor] * times])


def reaches(low: float, high: float, factor: float, steps: int) -> bool:
    """high reaches low x factor^steps: `steps` full steps fit in the range. Multiplied
    out left to right, as `reaches_rule` writes it for CEL."""
    right = float(low)
    for _ in range(steps):
        right = right * factor
    return float(high) * SLACK >= right


def reaches_half(low: float, high: float, factor: float, steps: int) -> bool:
    """high reaches low x factor^(steps + 1/2), squared: more than half a step lies past
    `steps` full steps, so max is a size of its own (else the last step is stretched to
    max)."""
    right = float(low) * float(low)
    for _ in range(2 * steps + 1):
        right = right * factor
    return float(high) * float(high) * SLACK >= right


def reaches_rule(low: str, high: str, factor: str, steps: int) -> str:
    """`reaches` as a CEL expression over the named fields."""
    return f"double({high}) * {SLACK} >= {_power(f'double({low})', factor, steps)}"


def reaches_half_rule(low: str, high: str, factor: str, steps: int) -> str:
    """`reaches_half` as a CEL expression over the named fields."""
    squared = f"double({low}) * double({low})"
    return f"double({high}) * double({high}) * {SLACK} >= {_power(squared, factor, 2 * steps + 1)}"


def too_many_rule(low: str, high: str, factor: str, limit: int) -> str:
    """CEL: the range gives more than `limit` values (`geometric`'s count is K + 1 full
    steps plus max when more than half a step is left: more than `limit` exactly when
    max lies past low x factor^(limit - 1/2))."""
    return reaches_half_rule(low, high, factor, limit - 1)


def geometric(low: float, high: float, factor: float, cap: int) -> list[float]:
    """low x factor^k for every full step within high, then high itself: appended when
    more than half a step is left, else in place of the last value (a range always ends
    at max, and never with a sliver of a step: 10 to 100 by 3 is 10, 30, 100). Its
    length is more than `limit` exactly when `reaches_half(low, high, factor, limit - 1)`;
    at most cap + 2 values are made."""
    steps = 0
    while steps <= cap and reaches(low, high, factor, steps + 1):
        steps += 1
    out = [low * factor**k for k in range(steps + 1)]
    if steps == 0 or reaches_half(low, high, factor, steps):
        out.append(high)
    else:
        out[-1] = high
    return out


# --------------------------------------------------------------------------- grids


_GRID_RULES: list[JsonValue] = [
    cel(
        "has(self.values) != (has(self.min) || has(self.max))",
        "give either values, or min and max (with an optional factor), not both",
    ),
    cel(
        "has(self.values) || (has(self.min) && has(self.max))",
        "a range needs both min and max",
    ),
    cel(
        "!has(self.min) || !has(self.max) || self.min < self.max",
        "min must be smaller than max",
    ),
    cel(
        "!has(self.min) || !has(self.max) || !("
        + too_many_rule("self.min", "self.max", "self.factor", MAX_LIST_SIZES)
        + ")",
        f"a range gives at most {MAX_LIST_SIZES} sizes (raise factor)",
    ),
]
#: A data-size range whose first step is under 1 rounds sizes together (1 to 2 by 1.2
#: is 1, 2): the rule that the range gives 3 sizes could not be checked by the CRD.
_FIRST_STEP = "dataSizes: a range's first step, min x (factor - 1), must be at least 1"
_THREE_SIZES = "dataSizes needs at least 3 sizes: max must reach min * factor^2"


class _Grid(SpecModel):
    """A geometric range (min, max, factor) or an explicit list of values."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _GRID_RULES})

    min: Annotated[int, Field(ge=1)] | None = None
    """Smallest size of a geometric range."""
    max: Annotated[int, Field(ge=1)] | None = None
    """Largest size of a geometric range, always trained: when min x factor^k does not
    reach it exactly, the last step is shorter (or, under the square root of factor,
    longer: 10 to 100 by 3 is 10, 30, 100)."""
    factor: Annotated[float, Field(gt=1, le=1000)] = 2.0
    """Ratio between neighbouring sizes of a range (the paper steps by about 2)."""
    values: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, min_length=1, max_length=MAX_LIST_SIZES
    )
    """Explicit sizes, instead of a range."""

    @model_validator(mode="after")
    def _one_form(self) -> _Grid:
        has_range = self.min is not None or self.max is not None
        if (self.values is not None) == has_range:
            raise ValueError(
                "give either values, or min and max (with an optional factor), not both"
            )
        if self.values is not None:
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"values must not repeat (got {self.values})")
            return self
        if self.min is None or self.max is None:
            raise ValueError("a range needs both min and max")
        if self.min >= self.max:
            raise ValueError(f"min must be smaller than max (got min={self.min}, max={self.max})")
        if reaches_half(self.min, self.max, self.factor, MAX_LIST_SIZES - 1):
            raise ValueError(
                f"a range gives at most {MAX_LIST_SIZES} sizes (raise factor): min={self.min}, "
                f"max={self.max}, factor={self.factor} gives more"
            )
        return self

    def sizes(self) -> list[int]:
        """The sizes in increasing order; geometric ranges are rounded to integers (a
        size that rounds onto the one before is dropped)."""
        if self.values is not None:
            return sorted(self.values)
        assert self.min is not None and self.max is not None
        out: list[int] = []
        for value in geometric(self.min, self.max, self.factor, MAX_LIST_SIZES):
            rounded = round(value)
            if not out or rounded > out[-1]:
                out.append(rounded)
        return out


class SizeGrid(_Grid):
    """Data sizes: a geometric range (min, max, factor) or an explicit list of values. A
    range must give the learning curve its 3 sizes; the rule that says so for the API
    server is on the spec (the CRD's `dataSizes needs at least 3 sizes`), the same
    comparison as here."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                *_GRID_RULES,
                cel(
                    "!has(self.min) || double(self.min) * (self.factor - 1.0) >= 1.0",
                    _FIRST_STEP,
                ),
            ]
        }
    )

    @model_validator(mode="after")
    def _three_sizes(self) -> SizeGrid:
        if self.min is None or self.max is None:
            return self
        if float(self.min) * (self.factor - 1.0) < 1.0:
            raise ValueError(
                f"{_FIRST_STEP} (got min={self.min}, factor={self.factor}): smaller steps "
                "round to the same size; raise min or factor, or list values"
            )
        if not reaches(self.min, self.max, self.factor, 2):
            raise ValueError(f"{_THREE_SIZES} (got min={self.min}, max={self.max}, "
                             f"factor={self.factor})")  # fmt: skip
        return self


class ModelSizeGrid(_Grid):
    """Model sizes; for an IsoFLOP study optionally with each listed size's parameter
    count (when the size knob is not the parameter count)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                *_GRID_RULES,
                cel(
                    "!has(self.parameters) || (has(self.values) && "
                    "size(self.parameters) == size(self.values))",
                    "parameters needs values, one parameter count per value",
                ),
            ]
        }
    )

    parameters: list[Annotated[float, Field(gt=0, le=1e15)]] | None = Field(
        default=None, min_length=1, max_length=MAX_LIST_SIZES
    )
    """The parameter count of each of values, in the same order (IsoFLOP studies: the N
    of C = k N D). Default: the built-in task's count (teacher-student, char-lm), else
    the size itself."""

    @model_validator(mode="after")
    def _parameters(self) -> ModelSizeGrid:
        if self.parameters is not None and (
            self.values is None or len(self.parameters) != len(self.values)
        ):
            raise ValueError("parameters needs values, one parameter count per value")
        return self

    def parameter_map(self) -> dict[int, float] | None:
        """Model size -> parameter count, when given."""
        if self.parameters is None or self.values is None:
            return None
        return dict(zip(self.values, self.parameters, strict=True))
