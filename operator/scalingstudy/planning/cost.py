"""What trials cost, in device-seconds: measured for finished trials, expected for the rest.

The device is what the trials request: GPUs when their pods ask for any (nvidia.com/gpu),
else CPUs (the cpu a pod requests, else its limit, else 1). A trial's device-seconds are
its duration times the devices of all its pods, so a CPU study on a laptop is priced in
CPU-seconds, never in GPU-seconds it did not use.

The expected cost of a trial comes from the finished ones through
``log cost = a + b log(data size) + c log(parameters)`` by least squares (b and c kept
in [0, 2]: training cost grows with both, at most quadratically), which follows the
6·N·D compute of a fixed number of epochs and bends where step limits clip it. With
too few distinct finished trials the exponents are taken as 1 (cost proportional to
data size times parameters, the scale from the finished trials), and with none the cost
is unknown. Pure Python: the operator decides with it and keeps numpy out of its process.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from scalingstudy.spec import ScalingStudySpec
from scalingstudy.spec.pod import Resources
from scalingstudy.status import TrialRecord

DeviceKind = Literal["gpu", "cpu"]
#: Kubernetes quantity suffixes a cpu amount may carry (millicores, and the SI and binary
#: multipliers the API server also accepts).
_SUFFIXES = {
    "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50,
}  # fmt: skip


@dataclass(frozen=True)
class Devices:
    """What one trial holds while it runs, all its pods together: the unit its spend,
    expected cost and budget are counted in."""

    kind: DeviceKind
    count: float

    @property
    def unit(self) -> str:
        """The word of the unit: GPU or CPU (GPU-seconds, CPU-hours)."""
        return self.kind.upper()


def _cpu_amount(raw: object) -> float | None:
    """A cpu quantity (2, "500m", "1.5") in cores; None when absent or unparsable."""
    if raw is None:
        return None
    text = str(raw).strip()
    scale = 1.0
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    try:
        value = float(text) * scale
    except ValueError:
        return None
    return value if value > 0 and math.isfinite(value) else None


def pod_cpus(resources: Resources) -> float:
    """CPUs of one pod: its cpu request, else its limit (Kubernetes requests the limit
    when no request is given), else 1."""
    for amounts in (resources.requests, resources.limits):
        cores = _cpu_amount(amounts.get("cpu"))
        if cores is not None:
            return cores
    return 1.0


def trial_devices(spec: ScalingStudySpec) -> Devices:
    """GPUs of every pod of a trial when its pods request GPUs, else their CPUs."""
    trainer = spec.trainer
    gpus = trainer.resources.gpus()
    if gpus > 0:
        return Devices("gpu", gpus * trainer.nodes)
    return Devices("cpu", pod_cpus(trainer.resources) * trainer.nodes)


def devices_per_trial(spec: ScalingStudySpec) -> float:
    """Devices of a whole trial (see :func:`trial_devices`): what a second of it costs."""
    return trial_devices(spec).count


def gpus_per_trial(spec: ScalingStudySpec) -> float:
    """GPUs of a whole trial: every pod's (spec.trainer.nodes of them)."""
    return spec.trainer.resources.gpus() * spec.trainer.nodes


def measured(record: TrialRecord, devices: float) -> float:
    """A finished trial's device-seconds, earlier attempts included (0 when its duration
    is unknown)."""
    return record.seconds_used * devices


@dataclass(frozen=True)
class CostModel:
    """Expected device-seconds of a trial from its data size and parameter count."""

    intercept: float
    data_exponent: float
    size_exponent: float

    def expected(self, data_size: float, parameters: float) -> float:
        return math.exp(
            self.intercept
            + self.data_exponent * math.log(data_size)
            + self.size_exponent * math.log(parameters)
        )

    @classmethod
    def fitted(
        cls, records: Iterable[TrialRecord], devices: float, sizes: Mapping[int, float]
    ) -> CostModel | None:
        """From finished trials with a duration; ``sizes`` maps a model size to its
        parameter count (the knob itself where none was reported). None without any. A
        pruned trial's duration counts in the spend, not here: it ran only part of its
        budget, so it would price a whole trial too low; nor a preempted one's (its last
        attempt may have resumed from a checkpoint, its earlier ones may have repeated
        work)."""
        timed = [r for r in records if (r.duration_seconds or 0) > 0 and r.status != "Pruned"]
        # Uninterrupted runs price a trial; where every one was preempted, their last
        # attempts do (a lower bound, better than no price: a budget would start all).
        clean = [r for r in timed if not r.earlier_seconds] or timed
        rows = [
            (math.log(r.data_size), math.log(sizes.get(r.model_size, r.model_size)),
             math.log((r.duration_seconds or 0.0) * devices))
            for r in clean
        ]  # fmt: skip
        if not rows:
            return None
        distinct_d = {round(x, 9) for x, _, _ in rows}
        distinct_p = {round(y, 9) for _, y, _ in rows}
        b = c = 1.0
        if len(distinct_d) >= 2 and len(distinct_p) >= 2 and len(rows) >= 4:
            b, c = _slopes(rows)
        intercept = sum(z - b * x - c * y for x, y, z in rows) / len(rows)
        return cls(intercept, b, c)


def _slopes(rows: list[tuple[float, float, float]]) -> tuple[float, float]:
    """Least-squares slopes of z on x and y (centred normal equations), kept in [0, 2]."""
    n = len(rows)
    mx = sum(r[0] for r in rows) / n
    my = sum(r[1] for r in rows) / n
    mz = sum(r[2] for r in rows) / n
    sxx = sum((r[0] - mx) ** 2 for r in rows)
    syy = sum((r[1] - my) ** 2 for r in rows)
    sxy = sum((r[0] - mx) * (r[1] - my) for r in rows)
    sxz = sum((r[0] - mx) * (r[2] - mz) for r in rows)
    syz = sum((r[1] - my) * (r[2] - mz) for r in rows)
    det = sxx * syy - sxy * sxy
    if det <= 1e-12 * max(sxx * syy, 1e-300):
        return 1.0, 1.0
    b = (sxz * syy - syz * sxy) / det
    c = (syz * sxx - sxz * sxy) / det
    return min(max(b, 0.0), 2.0), min(max(c, 0.0), 2.0)


def parameter_counts(records: Iterable[TrialRecord], candidates: list[int]) -> dict[int, float]:
    """Parameters per model size: the mean reported, extrapolated on a log-log line to
    sizes not trained yet, the knob itself where no trial reported any."""
    seen: dict[int, list[float]] = {}
    for r in records:
        if r.parameters:
            seen.setdefault(r.model_size, []).append(float(r.parameters))
    known = {m: sum(v) / len(v) for m, v in seen.items()}
    if not known:
        return {m: float(m) for m in candidates}
    pairs = sorted(known.items())
    out: dict[int, float] = {}
    for m in candidates:
        if m in known:
            out[m] = known[m]
            continue
        below = [p for p in pairs if p[0] < m]
        above = [p for p in pairs if p[0] > m]
        # between two trained sizes, or beyond them: the line through the two nearest
        near = [below[-1], above[0]] if below and above else below[-2:] if below else above[:2]
        if len(near) < 2:
            m0, p0 = near[0]
            out[m] = p0 * m / m0
            continue
        (m1, p1), (m2, p2) = near
        slope = math.log(p2 / p1) / math.log(m2 / m1) if m1 != m2 else 1.0
        out[m] = p1 * (m / m1) ** slope
    return out
