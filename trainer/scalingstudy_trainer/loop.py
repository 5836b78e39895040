"""The training loop: a budget that grows with the subset, early stopping on validation
loss, checkpoints that survive preemption, and the GPU kept busy.

Minibatches are a pure function of (seed, step), so a run resumed from a checkpoint
draws exactly the batches the uninterrupted run would have: on a CPU the two end
bit for bit the same.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, cast

import torch

from scalingstudy.spec import TrainingSpec
from scalingstudy_trainer.batches import (
    Feeder,
    Runtime,
    StepSampler,
    evaluate,
    sample_indices,
    step_budget,
)
from scalingstudy_trainer.checkpoint import Checkpoints, Preempted
from scalingstudy_trainer.distributed import Collectives
from scalingstudy_trainer.errors import DivergedError
from scalingstudy_trainer.norms import has_batch_norm
from scalingstudy_trainer.resume_state import restore_trainer, trainer_state
from scalingstudy_trainer.tasks.base import Task, parameter_count
from scalingstudy_trainer.trained import Trained, param_groups
from scalingstudy_trainer.world import SINGLE

Log = Callable[..., None]


class Trainer:
    """One trial's optimisation, with the state a checkpoint must hold."""

    def __init__(
        self,
        task: Task,
        data_size: int,
        model_size: int,
        seed: int,
        training: TrainingSpec,
        runtime: Runtime,
        collectives: Collectives | None = None,
    ) -> None:
        self.task, self.training, self.runtime = task, training, runtime
        self.collectives = collectives or Collectives(SINGLE, runtime.device)
        self.world = self.collectives.world
        cuda = runtime.device.type == "cuda"
        if cuda:
            # fp32 leftovers (LSTM, norms) on tensor cores; bf16 autocast does the rest.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(seed)
        self.train_data = Feeder(task.train_subset(data_size), runtime.device)
        self.validation = Feeder(task.validation_set(), runtime.device)
        self.model = task.build_model(model_size).to(runtime.device)
        self.parameters = parameter_count(self.model)
        self.non_embedding_parameters = task.non_embedding_parameters(self.model)
        #: BatchNorm makes a result depend on how the batch is cut into micro-batches.
        self.batch_norm = has_batch_norm(self.model)
        #: With several ranks: BatchNorm across ranks, rank 0's weights everywhere.
        self.model = self.collectives.wrap(self.model)
        self.run_model: torch.nn.Module = (
            cast(torch.nn.Module, torch.compile(self.model)) if runtime.compile else self.model
        )
        groups = param_groups(task, self.model, model_size, training)
        #: The hidden matrices' peak rate when learningRateScaling scaled them: what ran.
        self.hidden_peak: float | None = groups[1]["peak_lr"] if len(groups) > 1 else None
        self.optimizer = torch.optim.AdamW(
            groups,
            lr=training.learning_rate,
            weight_decay=training.weight_decay,
            fused=cuda or None,
        )
        self.batch_size = min(training.batch_size, self.train_data.items)
        self.collectives.check_batch(self.batch_size)
        #: Micro-batches per step, the same on every rank (agreed after an out-of-memory),
        #: at most the smallest rank's share (every micro-batch holds an item).
        self.chunks = 1
        self.most_chunks = self.batch_size // self.world.size
        #: Whether an out-of-memory changed the micro-batch of a BatchNorm model (whose
        #: normalisation batch it is): the result says so.
        self.normalisation_batch_changed = False
        self.budget = step_budget(training, self.train_data.items, self.batch_size)
        self.schedule = training.schedule
        self.sampler = StepSampler(self.train_data.items, self.batch_size, seed)
        #: Items per evaluation batch: the task's memory cap holds (a 50k-token vocabulary
        #: at context 1,024 allows one sequence), and an out-of-memory halves it.
        self.eval_batch = max(1, min(max(self.batch_size, 1024), task.eval_items_limit()))
        # The state a checkpoint holds besides the weights and the optimiser.
        self.step = 0
        self.best = math.inf
        self.best_step = 0
        self.stale = 0
        #: The loss patience last reset at (an improvement of at least minDelta on it); the
        #: result is ``best``, the lowest evaluated, whatever minDelta.
        self.reference = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        #: The first step whose training loss was not finite (-1: none), kept on the device
        #: so watching for it costs no synchronisation per step.
        self.diverged_at = torch.full((), -1, device=runtime.device, dtype=torch.long)
        self.train_sum = torch.zeros((), device=runtime.device, dtype=torch.float64)
        self.train_n = 0

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return trainer_state(self)

    def restore(self, state: dict[str, Any]) -> None:
        restore_trainer(self, state)

    # ------------------------------------------------------------------ one step
    @property
    def micro_batch(self) -> int:
        """Items of the largest micro-batch of a step on any rank."""
        return math.ceil(math.ceil(self.batch_size / self.world.size) / self.chunks)

    def _update(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step on (this rank's share of) the batch, in micro-batches with
        accumulated gradients; returns the loss weighted by the share of the global batch.
        Every rank then says whether its micro-batches fitted in memory (one collective):
        if one did not, every rank cuts its share into twice as many and redoes the step,
        so the batch size (a hyperparameter) never changes, only how it is cut, and no
        rank waits in a collective the others never reach. Gradients are summed over ranks
        only once every rank's step is done."""
        while True:
            total, failed = self._attempt(x, y)
            if not self.collectives.any(failed):
                self.collectives.sum_gradients(list(self.model.parameters()))
                self.optimizer.step()
                return total
            if self.chunks >= self.most_chunks:
                raise torch.OutOfMemoryError(
                    f"out of memory at a micro-batch of {self.micro_batch} item(s): "
                    "lower training.batchSize's memory (a smaller model) or use more processes"
                )
            self.chunks = min(self.chunks * 2, self.most_chunks)
            self.normalisation_batch_changed |= self.batch_norm

    def _attempt(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """This rank's forward and backward passes of a step; whether memory ran out. Every
        rank cuts its share into the same number of micro-batches (BatchNorm across ranks
        runs a collective in each forward)."""
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=x.device)
        try:
            parts = torch.tensor_split(x, self.chunks), torch.tensor_split(y, self.chunks)
            for xs, ys in zip(*parts, strict=True):
                share = xs.shape[0] / self.batch_size
                with self.runtime.autocast():
                    loss = self.task.loss(self.run_model, xs, ys)
                # Each rank's share-weighted losses sum, over ranks, to the global mean.
                (loss * share).backward()  # type: ignore[no-untyped-call]
                total += loss.detach().float() * share
        except torch.OutOfMemoryError:
            if self.batch_norm and self.world.size > 1:
                # The other ranks may wait in this forward's BatchNorm collective: they
                # cannot be told, so the trial ends here with the reason.
                raise torch.OutOfMemoryError(
                    f"out of memory at a micro-batch of {self.micro_batch} with BatchNorm "
                    f"across {self.world.size} processes: its statistics take every "
                    "process's micro-batch at once, so one process cannot cut its share "
                    "finer alone; lower training.batchSize or use more processes"
                ) from None
            self.optimizer.zero_grad(set_to_none=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return total, True
        return total, False

    def learning_rate_ratio(self, step: int) -> float:
        """Where on its schedule optimiser step ``step`` is: the learning rate over the peak.
        A function of the step alone, so a resumed trial continues the schedule exactly."""
        return self.schedule.multiplier(step, self.budget)

    def advance(self) -> None:
        """One optimiser step on the step's minibatch; its loss joins the running mean."""
        ratio = self.learning_rate_ratio(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["peak_lr"] * ratio
        indices = self.sampler.indices(self.step)
        start, end = self.world.share(indices.shape[0])
        x, y = self.train_data.batch(indices[start:end])
        loss = self._update(x, y)
        first = (self.diverged_at < 0) & ~torch.isfinite(loss)
        self.diverged_at.masked_fill_(first, self.step + 1)
        self.train_sum += loss.double()
        self.train_n += 1
        self.step += 1

    def _evaluate(self, feeder: Feeder | None = None, indices: torch.Tensor | None = None) -> float:
        """Mean loss on the validation set (or ``feeder``'s items ``indices``); a batch that
        does not fit in memory is halved and the evaluation redone (on this rank alone: an
        evaluation's one collective comes after its batches)."""
        while True:
            try:
                return evaluate(
                    self.task, self.run_model, feeder or self.validation, self.runtime,
                    self.eval_batch, indices=indices, collectives=self.collectives,
                )  # fmt: skip
            except torch.OutOfMemoryError:
                if self.eval_batch == 1:
                    raise
                self.eval_batch = max(self.eval_batch // 2, 1)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    def _save(self, checkpoints: Checkpoints) -> bool:
        """Rank 0 saves the state (every rank holds the same); the others wait for it."""
        saved = checkpoints.save(self.state()) if self.world.main else checkpoints.enabled
        self.collectives.barrier()
        return saved

    # ------------------------------------------------------------------ the run
    def run(self, log: Log, checkpoints: Checkpoints, stop: Callable[[], bool]) -> Trained:
        started = time.monotonic()
        resumed_from = self.step
        window_start, window_step = time.monotonic(), self.step
        diverged: int | None = None
        warned = False
        while self.step < self.budget:
            if self.collectives.any(stop()):
                saved = self._save(checkpoints)
                log("preempted", step=self.step, checkpoint_saved=saved)
                raise Preempted
            self.advance()
            if self.step % self.training.eval_every and self.step != self.budget:
                continue
            train_loss = float(self.collectives.sum(self.train_sum)) / self.train_n
            self.train_sum.zero_()
            self.train_n = 0
            validation_loss = self._evaluate()
            now = time.monotonic()
            log(
                "eval",
                step=self.step,
                samples_seen=self.step * self.batch_size,
                train_loss=train_loss,
                validation_loss=validation_loss,
                samples_per_second=round(
                    (self.step - window_step) * self.batch_size / max(now - window_start, 1e-9), 1
                ),
                micro_batch=self.micro_batch,
                eval_batch=self.eval_batch,
            )
            window_start, window_step = time.monotonic(), self.step
            if self.normalisation_batch_changed and not warned:
                warned = True
                log("warning", step=self.step, micro_batch=self.micro_batch, message=(
                    "out of memory: the micro-batch, which is BatchNorm's normalisation "
                    "batch, was cut; this trial's loss is not that of its batch size"))  # fmt: skip
            if not (math.isfinite(train_loss) and math.isfinite(validation_loss)):
                diverged = self._diverged(log, train_loss, validation_loss)
                break
            if self._judge(validation_loss, log):
                break
            if self.collectives.from_main(checkpoints.due()):
                self._save(checkpoints)
                log("checkpoint", step=self.step)
        return self._finish(started, resumed_from, diverged)

    def _judge(self, validation_loss: float, log: Log) -> bool:
        """Record an evaluation; whether early stopping ends the trial. The lowest loss
        evaluated is the result (and its weights are kept); patience counts evaluations
        without an improvement of minDelta, which decides only when to stop."""
        if validation_loss < self.best:
            self.best, self.best_step = validation_loss, self.step
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        stopping = self.training.early_stopping
        if stopping.improves(validation_loss, self.reference, self.best):
            self.reference, self.stale = validation_loss, 0
            return False
        self.stale += 1
        if self.stale < stopping.patience:
            return False
        log("early_stop", step=self.step, best_step=self.best_step)
        return True

    def _diverged(self, log: Log, train_loss: float, validation_loss: float) -> int:
        """A loss went NaN or infinite: training further cannot help. The trial ends with
        the lowest finite evaluation before it when there is one (like early stopping, and
        the result says where it diverged), else fails with a message that says so. Every
        rank gets here at the same evaluation (its losses are summed over ranks)."""
        first = self._first_diverged_step()
        at = first if first is not None else self.step
        log("diverged", step=at, evaluated_at=self.step, train_loss=train_loss,
            validation_loss=validation_loss, best_step=self.best_step)  # fmt: skip
        if self.best_state is None:
            raise DivergedError(
                f"the trial diverged: its loss is not finite from step {at} of {self.budget} "
                f"(training loss {train_loss}, validation loss {validation_loss} at step "
                f"{self.step}) and no evaluation before was finite: lower "
                "training.learningRate, lengthen the warmup (training.schedule) or check the "
                "data for NaN"
            )
        return at

    def _first_diverged_step(self) -> int | None:
        """The first step whose training loss was not finite on any rank (one collective):
        a NaN on one rank reaches the others' weights, and losses, a step later."""
        none = self.budget + 1
        steps = torch.where(self.diverged_at > 0, self.diverged_at, none)
        first = int(self.collectives.minimum(steps))
        return None if first == none else first

    def _finish(self, started: float, resumed_from: int, diverged: int | None) -> Trained:
        """The result: the best weights back in place, their training loss on a fixed random
        sample of the subset as large as the validation set (all of a small subset, so
        large subsets stay cheap), and the schedule the trial ran."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        sample = sample_indices(self.train_data.items, self.validation.items, self.task.data_seed)
        train_loss = self._evaluate(self.train_data, sample)
        final_ratio = self.learning_rate_ratio(max(self.step - 1, 0))
        return Trained(
            validation_loss=self.best,
            train_loss=train_loss,
            steps=self.step,
            samples_seen=self.step * self.batch_size,
            parameters=self.parameters,
            non_embedding_parameters=self.non_embedding_parameters,
            best_step=self.best_step,
            seconds=time.monotonic() - started,
            batch_size=self.batch_size,
            resumed_from_step=resumed_from,
            schedule_progress=self.step / self.budget,
            final_learning_rate_ratio=final_ratio,
            step_budget=self.budget,
            warmup_steps=self.schedule.warmup(self.budget),
            peak_learning_rate=self.training.learning_rate,
            final_learning_rate=self.training.learning_rate * final_ratio,
            hidden_peak_learning_rate=self.hidden_peak,
            hidden_final_learning_rate=(
                None if self.hidden_peak is None else self.hidden_peak * final_ratio
            ),
            diverged_at_step=diverged,
            micro_batch=self.micro_batch,
            normalisation_batch_changed=self.normalisation_batch_changed,
        )


def train(
    task: Task,
    data_size: int,
    model_size: int,
    seed: int,
    training: TrainingSpec,
    log: Log,
    checkpoints: Checkpoints | None = None,
    stop: Callable[[], bool] = lambda: False,
    runtime: Runtime | None = None,
    collectives: Collectives | None = None,
) -> Trained:
    runtime = runtime or Runtime.choose(task)
    checkpoints = checkpoints or Checkpoints("", {})
    trainer = Trainer(task, data_size, model_size, seed, training, runtime, collectives)
    # Rank 0's checkpoint for every rank: only pod 0 needs to see the checkpoint volume.
    state, why = trainer.collectives.from_main(
        checkpoints.load() if trainer.world.main else (None, "")
    )
    if state is not None:
        trainer.restore(state)
    log(
        "start",
        data_size=data_size,
        model_size=model_size,
        seed=seed,
        parameters=trainer.parameters,
        non_embedding_parameters=trainer.non_embedding_parameters,
        items=trainer.train_data.items,
        step_budget=trainer.budget,
        batch_size=trainer.batch_size,
        device=str(runtime.device),
        bf16=runtime.bf16,
        compiled=runtime.compile,
        processes=trainer.world.size,
        backend=trainer.collectives.backend,
        resumed_from_step=trainer.step,
        checkpoint=why if checkpoints.enabled else "disabled",
    )
    return trainer.run(log, checkpoints, stop)
