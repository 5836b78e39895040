"""What a fit is asked for: plain data, importable without numpy or scipy (the operator
builds these; the fitting itself runs in a child process)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

#: The learning-curve forms a fit may be asked for: the one vocabulary of the spec
#: (`fit.form`), the CLI (`--form`) and the fit.
Form = Literal["auto", "power-law", "power-law-plus-constant"]
FORMS: tuple[str, ...] = get_args(Form)

#: Bootstrap resamples unless asked otherwise: one default for `fit`, `plot`, study files
#: and the API, so the same data give the same intervals everywhere.
DEFAULT_BOOTSTRAP = 500


@dataclass(frozen=True)
class FitOptions:
    form: Form = "auto"
    confidence: float = 0.9
    bootstrap: int = DEFAULT_BOOTSTRAP
    predict_at: Sequence[float] = ()
    target_loss: float | None = None
    random_seed: int = 0
    joint: bool = False
    #: Bootstrap replicates of the joint fit (each is an L-BFGS run over all rows).
    joint_bootstrap: int = 50
    #: k of C = k N D (forward and backward pass: 6), for points with a compute.
    flops_per_parameter_per_item: float = 6.0
    #: Caveats of the fit's input the caller found (e.g. a reported parameter count that
    #: disagrees with the planned one): the report's first warnings.
    notes: tuple[str, ...] = ()
