"""Size grids: the data sizes and model sizes a study trains, as a geometric range or
an explicit list."""

from __future__ import annotations

import math
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
]


class SizeGrid(SpecModel):
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
    def _one_form(self) -> SizeGrid:
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
        if len(self.sizes()) > MAX_LIST_SIZES:
            raise ValueError(
                f"min={self.min}, max={self.max}, factor={self.factor} gives "
                f"{len(self.sizes())} sizes; at most {MAX_LIST_SIZES} are allowed (raise factor)"
            )
        return self

    def sizes(self) -> list[int]:
        """The sizes in increasing order; geometric ranges are rounded to integers."""
        if self.values is not None:
            return sorted(self.values)
        assert self.min is not None and self.max is not None
        out: list[int] = []
        k = 0
        while True:
            value = self.min * self.factor**k
            if value > self.max * (1 + 1e-9) or len(out) > 10 * MAX_LIST_SIZES:
                break
            rounded = round(value)
            if not out or rounded > out[-1]:
                out.append(rounded)
            k += 1
        if out[-1] < self.max:
            # The user asked for max: dropping it would shrink the study without a word.
            # A sliver of a last step (90 -> 100 by factor 3) moves the last size instead.
            if len(out) > 1 and self.max / out[-1] < math.sqrt(self.factor):
                out[-1] = self.max
            else:
                out.append(self.max)
        return out


class ModelSizeGrid(SizeGrid):
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
