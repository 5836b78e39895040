"""What a trial is, read from the environment its executor sets (the operator's pod or the
local runner's process), and what it owes back: progress, the result, and a clean stop
on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from scalingstudy_sdk import contract
from scalingstudy_sdk.curve import EVAL_EVENT, RUN_FIELD
from scalingstudy_sdk.order import Order
from scalingstudy_sdk.progress import ProgressPush
from scalingstudy_sdk.report import PushgatewayError, pushgateway_url, redacted, report_result

_RUNS: dict[int, str] = {}


def run_token() -> str:
    """This process's attempt of the trial, in its evaluation lines: a retry (a new
    process) is told apart from the attempt before it when both are in one log. Per
    process id, so a forked process gets its own."""
    pid = os.getpid()
    if pid not in _RUNS:
        _RUNS[pid] = f"{pid}.{time.time_ns()}"
    return _RUNS[pid]


class TrialError(ValueError):
    """The environment is not a trial's (run outside a study, or a value is malformed)."""


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name, "")
    if raw == "" and default is not None:
        return default
    try:
        return int(raw)
    except ValueError:
        if raw == "":
            raise TrialError(
                f"{name} is not set: run this script as a study's trainer "
                "(scalingstudy run study.yaml, or a study on a cluster)"
            ) from None
        raise TrialError(f"{name}={raw!r} is not an integer") from None


def _json(env: Mapping[str, str], inline: str, file: str) -> dict[str, Any]:
    """The task or training settings: a file of the study's ConfigMap (pods; named, it
    must be readable) or inline JSON (local runs); empty when neither is set (a trainer
    may not need them)."""
    if env.get(file):
        source = f"{file}: {env[file]}"
        try:
            text = Path(env[file]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TrialError(f"{file}: cannot read {env[file]}: {exc}") from None
    elif env.get(inline):
        source, text = inline, env[inline]
    else:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrialError(f"{source} is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise TrialError(f"{source} is not a JSON object")
    return data


def _check_pushgateway(env: Mapping[str, str]) -> None:
    """A malformed Pushgateway address is refused before training (a configuration
    error), not found when the trained result is pushed."""
    gateway = env.get(contract.ENV_PUSHGATEWAY, "")
    if gateway:
        try:
            pushgateway_url(gateway)
        except PushgatewayError as exc:
            raise TrialError(
                f"{contract.ENV_PUSHGATEWAY}={redacted(gateway)!r} is not a Pushgateway "
                f"address: {exc}"
            ) from None


@dataclass(frozen=True)
class Trial:
    """One trial of a scaling study: its sizes, seed, settings and where to report."""

    study: str
    name: str
    data_size: int
    model_size: int
    seed: int
    task: dict[str, Any] = field(default_factory=dict)
    """The study's ``task`` (name, options, dataSeed)."""
    training: dict[str, Any] = field(default_factory=dict)
    """The study's ``training`` settings (batchSize, maxSteps, learningRate, ...)."""
    learning_rate: float | None = None
    """This trial's rate in a learning-rate sweep, else training.learningRate (if any)."""
    metric: str = contract.METRIC
    checkpoint_dir: str | None = None
    namespace: str = ""
    nodes: int = 1
    node_rank: int = 0
    processes_per_pod: int = 1
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    _held: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Index space (n_items) -> the most items ``validation`` held out of it."""
    _taken: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Index space -> the fewest items a ``subset`` was taken after: a later validation
    of more items would overlap it."""
    _pushes: list[ProgressPush] = field(default_factory=list, init=False, repr=False,
                                        compare=False)  # fmt: skip

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Trial:
        """The trial this process trains. Raises TrialError outside a study."""
        env = dict(os.environ if env is None else env)
        task = _json(env, contract.ENV_TASK, contract.ENV_TASK_FILE)
        training = _json(env, contract.ENV_TRAINING, contract.ENV_TRAINING_FILE)
        _check_pushgateway(env)
        rate = env.get(contract.ENV_LEARNING_RATE) or training.get("learningRate")
        try:
            learning_rate = None if rate in (None, "") else float(rate)
        except ValueError:
            raise TrialError(f"{contract.ENV_LEARNING_RATE}={rate!r} is not a number") from None
        return cls(
            study=env.get(contract.ENV_STUDY, ""),
            name=env.get(contract.ENV_TRIAL, ""),
            data_size=_int(env, contract.ENV_DATA_SIZE),
            model_size=_int(env, contract.ENV_MODEL_SIZE),
            seed=_int(env, contract.ENV_SEED, 0),
            task=task,
            training=training,
            learning_rate=learning_rate,
            metric=env.get(contract.ENV_METRIC) or contract.METRIC,
            checkpoint_dir=env.get(contract.ENV_CHECKPOINT_DIR) or None,
            namespace=env.get(contract.ENV_NAMESPACE, ""),
            nodes=_int(env, contract.ENV_NODES, 1),
            node_rank=_int(env, contract.ENV_NODE_RANK, 0),
            processes_per_pod=_int(env, contract.ENV_PROCESSES_PER_POD, 1),
            env=env,
        )

    @classmethod
    def from_env_or_exit(cls) -> Trial:
        """`from_env`, or one line on stderr and exit 78 (a configuration error: the
        executor does not retry it)."""
        try:
            return cls.from_env()
        except TrialError as exc:
            print(f"scalingstudy-sdk: {exc}", file=sys.stderr)
            raise SystemExit(contract.EXIT_CONFIG_ERROR) from None

    @property
    def task_options(self) -> dict[str, Any]:
        options = self.task.get("options") or {}
        return dict(options) if isinstance(options, dict) else {}

    @property
    def data_seed(self) -> int:
        return int(self.task.get("dataSeed", 0))

    # ------------------------------------------------------------------ data
    def validation(self, n_items: int, count: int) -> list[int]:
        """The fixed validation items of a dataset of ``n_items``: the first ``count``
        positions of its order (the same for every trial of the study). Refused when a
        subset of this index space was already taken after fewer items (they would
        overlap)."""
        if count < 1:
            raise TrialError("validation needs at least one item")
        if count >= n_items:
            raise TrialError(f"validation of {count} items out of {n_items} leaves none to train")
        after = self._taken.get(n_items)
        if after is not None and after < count:
            raise TrialError(
                f"validation of {count} items would overlap the training subset taken after "
                f"{after}: take it as subset({n_items}, validation={count}), or call "
                "validation first"
            )
        self._held[n_items] = max(count, self._held.get(n_items, 0))
        return Order(n_items, self.data_seed).positions(0, count)

    def subset(self, n_items: int, validation: int | None = None) -> list[int]:
        """This trial's training items: the ``data_size`` positions after the first
        ``validation`` ones. Nested (a larger data size holds every smaller one) and
        disjoint from ``validation(n_items, validation)``, identical to the built-in
        trainer's order for the same dataSeed.

        ``validation`` left out: the items this trial's ``validation`` held out of the
        same ``n_items`` (so the two stay disjoint in either form), else none: the
        dataset's validation is elsewhere (a split of its own). A later ``validation`` of
        this index space that would overlap the subset is refused, never silent."""
        held = self._held.get(n_items, 0)
        start = held if validation is None else validation
        if start < 0:
            raise TrialError(f"validation={start}: a count of items, at least 0")
        if start < held:
            raise TrialError(f"subset after {start} validation items would overlap the "
                             f"{held} that validation({n_items}, {held}) holds out")  # fmt: skip
        pool = n_items - start
        if self.data_size > pool:
            raise TrialError(f"data size {self.data_size} is more than the {pool} items left "
                             f"after {start} for validation")  # fmt: skip
        self._taken[n_items] = min(start, self._taken.get(n_items, start))
        return Order(n_items, self.data_seed).positions(start, start + self.data_size)

    # ------------------------------------------------------------------ reporting
    def progress(
        self,
        step: int | None = None,
        validation_loss: float | None = None,
        train_loss: float | None = None,
        samples_seen: int | None = None,
        step_budget: int | None = None,
        **fields: Any,
    ) -> None:
        """One evaluation: a JSON line on stdout (the trial's log, which is its curve:
        ``curve.read_curve`` reads it) and, when a Pushgateway is set, its numbers pushed
        as the trial's live progress (throttled; a failing push never raises). A number
        not known is left out; ``step_budget`` is the steps the trial plans, if known."""
        named = {"step": step, "validation_loss": validation_loss, "train_loss": train_loss,
                 "samples_seen": samples_seen, "step_budget": step_budget}  # fmt: skip
        line = {k: v for k, v in named.items() if v is not None} | fields
        stamp = {"ts": round(time.time(), 3), "event": EVAL_EVENT, RUN_FIELD: run_token()}
        print(json.dumps({**stamp, **line}), flush=True)
        self._push.offer(line)

    @property
    def _push(self) -> ProgressPush:
        """The trial's progress push, made at its first evaluation (a Trial copied with
        ``dataclasses.replace`` gets its own)."""
        if not self._pushes:
            self._pushes.append(ProgressPush(self.env))
        return self._pushes[0]

    def report(self, validation_loss: float, parameters: int | None = None,
               **extra: Any) -> dict[str, Any]:  # fmt: skip
        """The trial's result: the study's metric (``validation_loss``, also under the
        metric's own name), the parameter count, and any other numbers."""
        result = {contract.METRIC: float(validation_loss), **extra}
        if self.metric != contract.METRIC:
            result.setdefault(self.metric, float(validation_loss))
        if parameters is not None:
            result["parameters"] = int(parameters)
        self._push.flush()  # the last evaluation the throttle held back
        report_result(result, self.env)
        print(json.dumps({"event": "result", **result}), flush=True)
        return result


class Preemption:
    """SIGTERM (preemption, eviction, a drain) as a flag a loop polls between steps: save
    a checkpoint in ``trial.checkpoint_dir``, then ``exit()`` with status 143 so the
    executor retries the trial from it."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> Preemption:
        def note(signum: int, frame: FrameType | None) -> None:
            self.requested = True

        signal.signal(signal.SIGTERM, note)
        return self

    def exit(self) -> None:
        raise SystemExit(contract.EXIT_PREEMPTED)
