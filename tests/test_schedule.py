"""Learning-rate schedules and the per-size learning-rate rule of the built-in trainer:
shapes, the trial's own budget, exact resumption, and which parameters the rule scales."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from scalingstudy.spec import SpecError, TrainingSpec, parse_spec
from scalingstudy.spec.training import ScheduleSpec
from scalingstudy_trainer.batches import Runtime
from scalingstudy_trainer.checkpoint import Checkpoints, Preempted
from scalingstudy_trainer.config import read_config
from scalingstudy_trainer.loop import Trainer, param_groups, train
from scalingstudy_trainer.main import run_trial
from scalingstudy_trainer.tasks.char_lm import CharLM
from scalingstudy_trainer.tasks.teacher_student import TeacherStudent

CPU = Runtime(device=torch.device("cpu"), bf16=False, compile=False)


def quiet(event: str, **fields: Any) -> None:
    pass


def test_warmup_then_cosine_reaches_the_ratio_at_the_trials_last_step() -> None:
    s = ScheduleSpec(kind="cosine", warmup_steps=10, min_learning_rate_ratio=0.1)
    ratios = [s.multiplier(i, 100) for i in range(100)]
    assert ratios[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # linear warmup
    assert ratios[10] == pytest.approx(1.0)
    assert ratios[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(ratios[9:]))  # falls after warmup
    assert ratios[55] == pytest.approx(0.1 + 0.9 * 0.5, abs=0.02)  # half-way


def test_linear_constant_and_fractional_warmup() -> None:
    linear = ScheduleSpec(kind="linear", min_learning_rate_ratio=0.0)
    assert [linear.multiplier(i, 5) for i in range(5)] == pytest.approx([1, 0.75, 0.5, 0.25, 0])
    assert ScheduleSpec().multiplier(3, 10) == 1.0  # the default: today's constant
    frac = ScheduleSpec(kind="cosine", warmup_fraction=0.25)
    assert frac.warmup(200) == 50 and frac.warmup(40) == 10  # each trial its own budget
    assert ScheduleSpec(warmup_steps=500).warmup(100) == 50  # at most half the trial


def test_schedule_and_rule_settings_are_validated_naming_the_field() -> None:
    base = {"task": {"name": "teacher-student"}, "dataSizes": {"values": [1, 2, 4]},
            "modelSizes": {"values": [1]}}  # fmt: skip
    cases = [
        ({"schedule": {"warmupSteps": 5, "warmupFraction": 0.1}}, "not both"),
        ({"schedule": {"kind": "step"}}, "spec.training.schedule.kind"),
        ({"schedule": {"minLearningRateRatio": 2}}, "spec.training.schedule.minLearningRateRatio"),
        ({"learningRateScaling": {"rule": "inverse-width"}}, "needs baseModelSize"),
    ]
    for training, fragment in cases:
        with pytest.raises(SpecError) as info:
            parse_spec({**base, "training": training})
        assert fragment in str(info.value), (training, info.value)


def test_inverse_width_scales_exactly_the_hidden_matrices() -> None:
    training = TrainingSpec.model_validate(
        {"learningRate": 0.01, "learningRateScaling": {"rule": "inverse-width", "baseModelSize": 8}}
    )
    mlp_task = TeacherStudent({"inputDim": 4, "teacherWidth": 8}, 0)
    mlp = mlp_task.build_model(32)
    groups = param_groups(mlp_task, mlp, 32, training)
    assert [g["peak_lr"] for g in groups] == pytest.approx([0.01, 0.01 * 8 / 32])
    linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    hidden = {id(p) for p in groups[1]["params"]}
    assert id(linears[0].weight) not in hidden  # reads the inputs: its fan-in is fixed
    assert all(id(m.weight) in hidden for m in linears[1:])
    assert not any(id(m.bias) in hidden for m in linears)

    lm_task = CharLM({"context": 16, "validationBytes": 2048}, 0)
    lm = lm_task.build_model(64)
    groups = param_groups(lm_task, lm, 64, training)
    hidden = {id(p) for p in groups[1]["params"]}
    names = {n for n, p in lm.named_parameters() if id(p) in hidden}
    assert names and all(n.startswith("blocks.") and n.endswith("weight") for n in names)
    assert not any("norm" in n for n in names)
    assert id(lm.get_submodule("token").weight) not in hidden  # tied embedding: keeps the rate
    assert {"blocks.0.qkv.weight", "blocks.0.proj.weight", "blocks.0.mlp.0.weight"} <= names
    plain = param_groups(lm_task, lm, 64, TrainingSpec())
    assert len(plain) == 1  # the default rule changes nothing


def test_a_resumed_trial_continues_its_schedule_exactly(tmp_path: Path) -> None:
    training = TrainingSpec.model_validate({
        "minSteps": 60, "maxSteps": 60, "evalEvery": 10, "batchSize": 16, "learningRate": 3e-3,
        "schedule": {"kind": "cosine", "warmupFraction": 0.2, "minLearningRateRatio": 0.05},
        "learningRateScaling": {"rule": "inverse-width", "baseModelSize": 4},
    })  # fmt: skip
    task = TeacherStudent({"inputDim": 4, "teacherWidth": 8}, 0)
    whole = train(task, 300, 8, 5, training, quiet, runtime=CPU)
    assert whole.schedule_progress == 1.0
    assert whole.final_learning_rate_ratio == pytest.approx(0.05)
    checkpoints = Checkpoints(str(tmp_path / "ckpt"), {"trial": "t"})
    calls = itertools.count()
    with pytest.raises(Preempted):
        train(task, 300, 8, 5, training, quiet, checkpoints, lambda: next(calls) == 17,
              runtime=CPU)  # fmt: skip
    resumed = train(task, 300, 8, 5, training, quiet, checkpoints, runtime=CPU)
    assert resumed.resumed_from_step == 17
    assert resumed.validation_loss == whole.validation_loss
    assert resumed.train_loss == whole.train_loss


def test_early_stopping_reports_where_on_the_schedule_it_stopped() -> None:
    training = TrainingSpec.model_validate({
        "minSteps": 400, "maxSteps": 400, "evalEvery": 5, "batchSize": 16, "learningRate": 0.05,
        "earlyStopping": {"patience": 1, "minDelta": 1.0},  # stops at the second evaluation
        "schedule": {"kind": "linear", "minLearningRateRatio": 0.0},
    })  # fmt: skip
    task = TeacherStudent({"inputDim": 4, "teacherWidth": 8}, 0)
    trainer = Trainer(task, 300, 8, 0, training, CPU)
    out = trainer.run(quiet, Checkpoints("", {}), lambda: False)
    assert out.steps < 400
    assert out.schedule_progress == pytest.approx(out.steps / 400)
    assert out.final_learning_rate_ratio == pytest.approx(1 - (out.steps - 1) / 399)


def test_a_scaled_rule_records_the_rate_the_hidden_matrices_ran_at() -> None:
    """With learningRateScaling the result's peak/final rates are training.learningRate's
    (the embeddings, biases and norms); the hidden matrices ran at that times the rule's
    factor, and the result used not to say so."""
    training = {
        "minSteps": 20, "maxSteps": 20, "evalEvery": 10, "batchSize": 16, "learningRate": 0.01,
        "learningRateScaling": {"rule": "inverse-width", "baseModelSize": 8},
        "schedule": {"kind": "linear", "minLearningRateRatio": 0.1},
    }  # fmt: skip
    env = {
        "SCALINGSTUDY_TASK": json.dumps(
            {"name": "teacher-student", "options": {"inputDim": 4, "teacherWidth": 8}}
        ),
        "SCALINGSTUDY_TRAINING": json.dumps(training),
        "SCALINGSTUDY_DATA_SIZE": "128",
        "SCALINGSTUDY_MODEL_SIZE": "32",
    }
    result = run_trial(read_config(env), False)
    assert result is not None
    assert result["peak_learning_rate"] == 0.01
    assert result["final_learning_rate"] == pytest.approx(0.001)
    assert result["hidden_peak_learning_rate"] == pytest.approx(0.01 * 8 / 32)
    assert result["hidden_final_learning_rate"] == pytest.approx(0.001 * 8 / 32)
    plain = {**env, "SCALINGSTUDY_TRAINING": json.dumps({"minSteps": 20, "maxSteps": 20})}
    unscaled = run_trial(read_config(plain), False)
    assert unscaled is not None and "hidden_peak_learning_rate" not in unscaled
