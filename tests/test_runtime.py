"""How the trainer picks precision and compilation, and that the bf16 path trains.

The CUDA choices (bf16 and compile on by default) need a GPU and are measured by
benchmarks/trainer_throughput.py there; on a CPU the defaults must stay fp32 and
eager, which is what keeps CPU results reproducible bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scalingstudy.spec import TrainingSpec
from scalingstudy_trainer.batches import Runtime
from scalingstudy_trainer.loop import train
from scalingstudy_trainer.tasks.char_lm import CharLM
from scalingstudy_trainer.tasks.teacher_student import TeacherStudent

CPU = torch.device("cpu")


def quiet(event: str, **fields: Any) -> None:
    pass


def test_cpu_defaults_are_fp32_and_eager() -> None:
    runtime = Runtime.choose(CharLM({}, 0), CPU)
    assert (runtime.bf16, runtime.compile) == (False, False)


def test_options_force_precision_and_compilation() -> None:
    runtime = Runtime.choose(CharLM({"precision": "bf16", "compile": "on"}, 0), CPU)
    assert (runtime.bf16, runtime.compile) == (True, True)
    assert Runtime.choose(CharLM({"precision": "fp32"}, 0), CPU).bf16 is False


def test_bf16_autocast_trains_to_a_close_result() -> None:
    training = TrainingSpec.model_validate({"minSteps": 80, "maxSteps": 80, "evalEvery": 20})
    options = {"inputDim": 4, "teacherWidth": 8}
    fp32 = train(TeacherStudent(options, 0), 256, 16, 0, training, quiet)
    bf16_task = TeacherStudent({**options, "precision": "bf16"}, 0)
    bf16 = train(bf16_task, 256, 16, 0, training, quiet, runtime=Runtime(CPU, True, False))
    assert math.isfinite(bf16.validation_loss)
    assert bf16.validation_loss != fp32.validation_loss  # the autocast path really ran
    assert abs(bf16.validation_loss - fp32.validation_loss) < 0.2 * fp32.validation_loss


def test_only_the_transformer_is_compiled_by_default() -> None:
    assert CharLM({"model": "transformer"}, 0).compile_helps()
    assert not CharLM({"model": "lstm"}, 0).compile_helps()
    assert not TeacherStudent({}, 0).compile_helps()
