"""The torch-free parameter counts an IsoFLOP study uses for the built-in tasks (issue 28)
agree with the trainer's own models, for every option that changes them."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from scalingstudy.spec import parse_spec
from scalingstudy.spec.parameters import builtin_parameters
from scalingstudy_trainer.tasks.base import parameter_count
from scalingstudy_trainer.tasks.char_lm import LSTMLM, TransformerLM
from scalingstudy_trainer.tasks.teacher_student import TeacherStudent


def counted(model: torch.nn.Module) -> int:
    """What the trainer reports as the trial's `parameters`."""
    return parameter_count(model)


@pytest.mark.parametrize("options", [{}, {"inputDim": 5, "studentDepth": 1},
                                     {"input_dim": 7, "student_depth": 4}])  # fmt: skip
@pytest.mark.parametrize("width", [1, 4, 33, 256])
def test_teacher_student(options: dict[str, Any], width: int) -> None:
    model = TeacherStudent(options, 0).build_model(width)
    assert builtin_parameters("teacher-student", options, width) == counted(model)


@pytest.mark.parametrize(
    ("options", "vocab", "context"),
    [({}, 256, 128), ({"context": 64}, 256, 64),
     ({"tokens": "/data/t.bin", "vocabSize": 1000, "context": 32}, 1000, 32)],
)  # fmt: skip
@pytest.mark.parametrize("width", [8, 16, 64, 96, 192])
def test_char_lm_transformer(options: dict[str, Any], vocab: int, context: int, width: int) -> None:
    assert builtin_parameters("char-lm", options, width) == counted(
        TransformerLM(width, context, vocab)
    )


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_char_lm_lstm(layers: int) -> None:
    options = {"model": "lstm", "lstmLayers": layers}
    assert builtin_parameters("char-lm", options, 48) == counted(LSTMLM(48, layers, 256))


def test_a_study_without_a_parameters_list_uses_the_task_count_or_the_knob() -> None:
    base = {"dataSizes": {"min": 1000, "max": 10**8}, "modelSizes": {"values": [16, 32, 64]}}
    builtin = parse_spec({**base, "task": {"name": "char-lm", "options": {"context": 64}}})
    assert builtin.parameter_counts() == {
        m: float(counted(TransformerLM(m, 64, 256))) for m in (16, 32, 64)
    }
    custom = parse_spec({**base, "task": {"name": "mine"}, "trainer": {"command": ["t"]}})
    assert custom.parameter_counts() is None
    images = parse_spec({**base, "task": {"name": "image-classification"}})
    assert images.parameter_counts() is None
