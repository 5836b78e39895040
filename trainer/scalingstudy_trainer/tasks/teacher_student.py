"""Teacher-student regression: a fixed random network labels Gaussian inputs, with noise.

The answer is known: the noise variance is the irreducible error (gamma), and the
student family (MLPs whose hidden width is the size knob) can represent the teacher,
so the learning curve falls as a power law towards it. It trains in seconds on a CPU,
which makes it the reference for the runner, the operator and the fit.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field

from scalingstudy_trainer.subsets import TRAIN_STREAM, VALIDATION_STREAM, stream_normal
from scalingstudy_trainer.tasks.base import Batch, Task, TaskOptions, register


class TeacherStudentOptions(TaskOptions):
    input_dim: int = Field(default=16, ge=1, le=4096)
    teacher_width: int = Field(default=32, ge=1, le=65536)
    noise: float = Field(default=0.1, ge=0.0, le=100.0)
    """Standard deviation of label noise; its square is the irreducible error."""
    student_depth: int = Field(default=2, ge=1, le=16)
    validation_size: int = Field(default=4096, ge=16, le=1_000_000)


@register
class TeacherStudent(Task):
    name = "teacher-student"
    options_model = TeacherStudentOptions
    options: TeacherStudentOptions

    def _teacher(self, x: np.ndarray) -> np.ndarray:
        o = self.options
        rng = np.random.default_rng([self.data_seed, 104729])
        w1 = rng.standard_normal((o.input_dim, o.teacher_width)) / math.sqrt(o.input_dim)
        b1 = rng.standard_normal(o.teacher_width) * 0.5
        w2 = rng.standard_normal((o.teacher_width, 1)) / math.sqrt(o.teacher_width)
        return np.asarray(np.tanh(x @ w1 + b1) @ w2, dtype=np.float32)

    def _examples(self, stream: int, count: int) -> Batch:
        o = self.options
        x = stream_normal(self.data_seed, stream, count, o.input_dim)
        noise = stream_normal(self.data_seed, stream + 100, count, 1)
        y = self._teacher(x) + o.noise * noise
        return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))

    def train_subset(self, data_size: int) -> Batch:
        return self._examples(TRAIN_STREAM, data_size)

    def validation_set(self) -> Batch:
        return self._examples(VALIDATION_STREAM, self.options.validation_size)

    def build_model(self, model_size: int) -> torch.nn.Module:
        o = self.options
        layers: list[torch.nn.Module] = []
        width_in = o.input_dim
        for _ in range(o.student_depth):
            layers += [torch.nn.Linear(width_in, model_size), torch.nn.Tanh()]
            width_in = model_size
        layers.append(torch.nn.Linear(width_in, 1))
        return torch.nn.Sequential(*layers)

    def loss(
        self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(inputs).float(), targets.float())
