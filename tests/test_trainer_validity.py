"""The trainer's numbers mean what they say (issue 41): every trial's schedule ends where
the spec promises, the result is the lowest validation loss evaluated, the training loss
is measured on a random sample (not the first items stored), and a diverged run says so."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from scalingstudy.spec import SpecError, TrainingSpec, parse_spec
from scalingstudy.spec.training import EarlyStopping, ScheduleSpec
from scalingstudy_trainer.batches import Runtime, evaluate, sample_indices
from scalingstudy_trainer.checkpoint import Checkpoints
from scalingstudy_trainer.errors import DivergedError
from scalingstudy_trainer.loop import Trainer, train
from scalingstudy_trainer.tasks.base import Batch
from scalingstudy_trainer.tasks.teacher_student import TeacherStudent
from tests.training import DivergingTeacherStudent

CPU = Runtime(device=torch.device("cpu"), bf16=False, compile=False)
OPTIONS = {"inputDim": 4, "teacherWidth": 8, "validationSize": 256}


class Events:
    """The trainer's log, kept."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, **fields: Any) -> None:
        self.seen.append((event, fields))

    def of(self, name: str) -> list[dict[str, Any]]:
        return [f for e, f in self.seen if e == name]


# ------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize("budget", [1, 2, 3, 50, 200, 499, 500, 501, 1000, 5000])
def test_every_budget_ends_its_decay_at_the_promised_rate(budget: int) -> None:
    """warmupSteps 500 used to be squeezed to budget - 1, leaving a budget-200 trial at
    the peak rate on its last step while a budget-1000 trial ended at 0.1."""
    for kind in ("cosine", "linear"):
        s = ScheduleSpec(kind=kind, warmup_steps=500, min_learning_rate_ratio=0.1)
        assert s.multiplier(budget - 1, budget) == pytest.approx(0.1), (kind, budget)
        assert s.warmup(budget) <= budget // 2
        ratios = [s.multiplier(i, budget) for i in range(budget)]
        assert max(ratios) == pytest.approx(1.0) or budget == 1  # the peak is reached


def test_a_short_trial_records_the_schedule_it_ran() -> None:
    training = TrainingSpec.model_validate({
        "minSteps": 40, "maxSteps": 1000, "epochs": 1, "evalEvery": 10, "batchSize": 16,
        "learningRate": 0.01, "earlyStopping": {"patience": 1000},
        "schedule": {"kind": "cosine", "warmupSteps": 500, "minLearningRateRatio": 0.1},
    })  # fmt: skip
    task = TeacherStudent(OPTIONS, 0)
    out = train(task, 64, 8, 0, training, Events(), runtime=CPU)
    assert (out.steps, out.step_budget, out.warmup_steps) == (40, 40, 20)
    assert out.final_learning_rate_ratio == pytest.approx(0.1)
    assert out.peak_learning_rate == 0.01
    assert out.final_learning_rate == pytest.approx(0.001)


# ------------------------------------------------------------------------- the result


def test_the_result_is_the_lowest_loss_evaluated_whatever_min_delta() -> None:
    """minDelta 0.05 makes patience ignore the small late improvements; the result used
    to be the loss patience last reset at, not the lowest one evaluated."""
    training = TrainingSpec.model_validate({
        "minSteps": 300, "maxSteps": 300, "evalEvery": 10, "batchSize": 16,
        "learningRate": 0.01, "earlyStopping": {"patience": 6, "minDelta": 0.05},
    })  # fmt: skip
    task = TeacherStudent(OPTIONS, 0)
    log = Events()
    out = train(task, 256, 8, 0, training, log, runtime=CPU)
    evals = {e["step"]: e["validation_loss"] for e in log.of("eval")}
    lowest = min(evals, key=lambda step: evals[step])
    assert out.validation_loss == evals[lowest]
    assert out.best_step == lowest
    # The weights kept are those of the lowest evaluation: scoring them again agrees.
    trainer = Trainer(task, 256, 8, 0, training, CPU)
    trainer.run(Events(), Checkpoints("", {}), lambda: False)
    again = evaluate(task, trainer.model, trainer.validation, CPU, 256)
    assert again == pytest.approx(out.validation_loss, rel=1e-6)


def test_a_relative_min_delta_scales_with_the_best_loss() -> None:
    relative = EarlyStopping(min_delta=0.1, min_delta_mode="relative")
    assert relative.improves(0.89, 1.0, 1.0) and not relative.improves(0.91, 1.0, 1.0)
    assert relative.improves(0.0089, 0.01, 0.01) and not relative.improves(0.0091, 0.01, 0.01)
    absolute = EarlyStopping(min_delta=0.1)
    assert not absolute.improves(0.0001, 0.01, 0.01)  # no low-loss improvement counts at all
    assert absolute.improves(1.0, math.inf, math.inf)
    assert not absolute.improves(math.nan, 1.0, 1.0)
    base = {"task": {"name": "teacher-student"}, "dataSizes": {"values": [1, 2, 4]},
            "modelSizes": {"values": [1]}}  # fmt: skip
    study = parse_spec(
        {**base, "training": {"earlyStopping": {"minDelta": 0.01, "minDeltaMode": "relative"}}}
    )
    assert study.training.early_stopping.min_delta_mode == "relative"
    with pytest.raises(SpecError, match="below 1"):
        parse_spec(
            {**base, "training": {"earlyStopping": {"minDelta": 1.5, "minDeltaMode": "relative"}}}
        )


def test_a_relative_min_delta_is_a_share_of_the_best_loss_so_far() -> None:
    """As documented: the decrease that resets patience, measured from the loss patience
    last reset at (1.0 here), is minDelta x the lowest loss evaluated so far (this one
    included), not x the loss at the reset (which asked for 0.1 whatever the best)."""
    relative = EarlyStopping(min_delta=0.1, min_delta_mode="relative")
    assert relative.improves(0.905, 1.0, 0.905)  # 1.0 - 0.1 x 0.905 = 0.9095
    assert not relative.improves(0.91, 1.0, 0.91)  # 1.0 - 0.1 x 0.91 = 0.909
    assert relative.improves(0.94, 1.0, 0.5)  # a best of 0.5 asks for 0.05 only
    absolute = EarlyStopping(min_delta=0.1)
    assert absolute.improves(0.899, 1.0, 0.899) and not absolute.improves(0.905, 1.0, 0.905)


def test_relative_patience_in_a_trial_follows_the_best_loss_so_far() -> None:
    """Patience in a trial: a loss that beats the last reset by minDelta x the best so far
    resets it. The evaluations 1.0, 0.95, 0.904 with minDelta 0.1 (relative): the third
    resets patience, so a patience of 2 does not stop the trial there."""
    training = TrainingSpec.model_validate({
        "minSteps": 40, "maxSteps": 40, "evalEvery": 10, "batchSize": 16,
        "earlyStopping": {"patience": 2, "minDelta": 0.1, "minDeltaMode": "relative"},
    })  # fmt: skip
    trainer = Trainer(TeacherStudent(OPTIONS, 0), 64, 8, 0, training, CPU)
    log = Events()
    stops = [trainer._judge(loss, log) for loss in (1.0, 0.95, 0.904, 0.95, 0.95)]
    assert stops == [False, False, False, False, True]
    assert (trainer.best, trainer.reference) == (0.904, 0.904)


# ------------------------------------------------------------------------- train_loss


class SortedTeacherStudent(TeacherStudent):
    """The teacher-student data stored sorted by target, as a folder-per-class image set is
    stored by class: the first items are not a sample of the subset."""

    def train_subset(self, data_size: int) -> Batch:
        x, y = super().train_subset(data_size)
        order = torch.argsort(y[:, 0])
        return x[order], y[order]


def test_train_loss_is_measured_on_a_random_sample_of_the_subset() -> None:
    training = TrainingSpec.model_validate(
        {"minSteps": 60, "maxSteps": 60, "evalEvery": 20, "batchSize": 32, "learningRate": 0.01}
    )
    task = SortedTeacherStudent(OPTIONS | {"validationSize": 512}, 0)
    trainer = Trainer(task, 2048, 8, 0, training, CPU)
    out = trainer.run(Events(), Checkpoints("", {}), lambda: False)
    whole = evaluate(task, trainer.model, trainer.train_data, CPU, 4096)
    prefix = evaluate(task, trainer.model, trainer.train_data, CPU, 4096, indices=torch.arange(512))
    sample = sample_indices(2048, 512, task.data_seed)
    assert out.train_loss == evaluate(task, trainer.model, trainer.train_data, CPU, 4096,
                                      indices=sample)  # fmt: skip
    # The first 512 stored items hold the lowest targets: far from the whole subset's loss.
    assert abs(out.train_loss - whole) < 0.5 * abs(prefix - whole)
    assert torch.equal(sample, sample_indices(2048, 512, task.data_seed))  # every process
    assert int(sample.max()) > 1024 and len(set(sample.tolist())) == 512
    assert torch.equal(sample_indices(100, 128, 0), torch.arange(100))  # a small subset: all


# ------------------------------------------------------------------------- divergence


TRAINING = {"minSteps": 100, "maxSteps": 100, "evalEvery": 10, "batchSize": 16,
            "learningRate": 0.01, "earlyStopping": {"patience": 1000}}  # fmt: skip


def test_a_run_that_diverges_before_any_finite_evaluation_fails_saying_where() -> None:
    task = DivergingTeacherStudent(OPTIONS, 0)
    task.nan_from = 3
    log = Events()
    with pytest.raises(DivergedError, match="not finite from step 4 of 100"):
        train(task, 256, 8, 0, TrainingSpec.model_validate(TRAINING), log, runtime=CPU)
    assert log.of("diverged")[0]["step"] == 4
    assert len(log.of("eval")) == 1  # it stopped at the first evaluation after it


def test_a_run_that_diverges_later_reports_its_best_finite_loss_and_where() -> None:
    task = DivergingTeacherStudent(OPTIONS, 0)
    task.nan_from = 34
    log = Events()
    out = train(task, 256, 8, 0, TrainingSpec.model_validate(TRAINING), log, runtime=CPU)
    evals = [e["validation_loss"] for e in log.of("eval")]
    assert out.diverged_at_step == 35 and out.steps == 40
    assert out.validation_loss == min(evals[:3]) and out.best_step <= 30
    assert torch.isfinite(torch.tensor(out.train_loss))


# ------------------------------------------------------------------------- out of memory


class CappedEvaluation(TeacherStudent):
    """A task whose evaluation outputs allow 3 items a batch (as a 50k-token vocabulary at
    context 1,024 allows 1)."""

    def eval_items_limit(self) -> int:
        return 3


class EvaluationOom(TeacherStudent):
    """A stand-in for a GPU running out of memory (a CPU cannot be made to): evaluation
    batches of more than 100 items fail."""

    def loss(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Any:
        if not model.training and inputs.shape[0] > 100:
            raise torch.OutOfMemoryError("stand-in: CUDA out of memory")
        return super().loss(model, inputs, targets)


def test_the_evaluation_batch_keeps_the_tasks_memory_cap_and_halves_on_out_of_memory() -> None:
    training = TrainingSpec.model_validate(TRAINING | {"minSteps": 20, "maxSteps": 20})
    assert Trainer(CappedEvaluation(OPTIONS, 0), 256, 8, 0, training, CPU).eval_batch == 3
    log = Events()
    out = train(EvaluationOom(OPTIONS, 0), 256, 8, 0, training, log, runtime=CPU)
    plain = train(TeacherStudent(OPTIONS, 0), 256, 8, 0, training, Events(), runtime=CPU)
    assert log.of("eval")[0]["eval_batch"] == 64  # 1024 halved until it fits
    assert out.validation_loss == pytest.approx(plain.validation_loss, rel=1e-6)


class TrainingOom(TeacherStudent):
    """A stand-in for a GPU running out of memory: training micro-batches of more than 8
    items fail."""

    def loss(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Any:
        if model.training and inputs.shape[0] > 8:
            raise torch.OutOfMemoryError("stand-in: CUDA out of memory")
        return super().loss(model, inputs, targets)


class BatchNormOom(TrainingOom):
    """The same with BatchNorm in the model, whose normalisation batch is the micro-batch."""

    def build_model(self, model_size: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Linear(4, model_size), torch.nn.BatchNorm1d(model_size), torch.nn.ReLU(),
            torch.nn.Linear(model_size, 1),
        )  # fmt: skip


def test_an_out_of_memory_keeps_the_loss_and_says_when_it_changed_a_batchnorm() -> None:
    training = TrainingSpec.model_validate(TRAINING | {"minSteps": 30, "maxSteps": 30})
    plain = train(TeacherStudent(OPTIONS, 0), 256, 8, 0, training, Events(), runtime=CPU)
    cut = train(TrainingOom(OPTIONS, 0), 256, 8, 0, training, Events(), runtime=CPU)
    assert (plain.micro_batch, cut.micro_batch) == (16, 8)
    assert cut.validation_loss == pytest.approx(plain.validation_loss, rel=1e-5)
    assert not cut.normalisation_batch_changed
    log = Events()
    normed = train(BatchNormOom(OPTIONS, 0), 256, 8, 0, training, log, runtime=CPU)
    assert normed.micro_batch == 8 and normed.normalisation_batch_changed
    assert "normalisation batch" in log.of("warning")[0]["message"]
