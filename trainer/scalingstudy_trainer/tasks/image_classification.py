"""Image classification: labelled images from files with an MLP or a small ResNet family.

All examples are put in a fixed order by the study's data seed; the first
``validationFraction`` of them are the validation set and a subset of m examples is
the next m, so subsets are nested and never touch validation. Inputs are
standardised with the mean and spread of the training pool. The loss is the
cross-entropy in nats.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from pydantic import Field

from scalingstudy_trainer.errors import ConfigError
from scalingstudy_trainer.images import ImageSet, load_images
from scalingstudy_trainer.tasks.base import Batch, Task, TaskOptions, register


class ImageOptions(TaskOptions):
    dataset: str = "digits"
    """``digits`` (scikit-learn's, offline), an ``.npz`` file (arrays x/images and
    y/labels) or a folder with one sub-folder of images per class."""
    model: Literal["mlp", "resnet"] = "mlp"
    depth: int = Field(default=2, ge=1, le=16)
    """Hidden layers of the MLP; residual blocks per stage of the ResNet."""
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)


class ResidualBlock(torch.nn.Module):
    def __init__(self, channels_in: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(channels)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(channels)
        self.shortcut: torch.nn.Module = torch.nn.Identity()
        if stride != 1 or channels_in != channels:
            self.shortcut = torch.nn.Sequential(
                torch.nn.Conv2d(channels_in, channels, 1, stride, bias=False),
                torch.nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        out: torch.Tensor = F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))
        return out


def resnet(channels: int, width: int, depth: int, classes: int, size: int) -> torch.nn.Module:
    """Three stages of ``depth`` blocks at width, 2x and 4x channels; a stage halves the
    image while it is larger than 2 pixels."""
    layers: list[torch.nn.Module] = [
        torch.nn.Conv2d(channels, width, 3, 1, 1, bias=False),
        torch.nn.BatchNorm2d(width),
        torch.nn.ReLU(),
    ]
    c_in = width
    for stage in range(3):
        c_out = width * 2**stage
        for block in range(depth):
            stride = 2 if stage and block == 0 and size > 2 else 1
            size = (size + 1) // 2 if stride == 2 else size
            layers.append(ResidualBlock(c_in, c_out, stride))
            c_in = c_out
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(c_in, classes)]
    return torch.nn.Sequential(*layers)


def mlp(features: int, width: int, depth: int, classes: int) -> torch.nn.Module:
    layers: list[torch.nn.Module] = [torch.nn.Flatten()]
    width_in = features
    for _ in range(depth):
        layers += [torch.nn.Linear(width_in, width), torch.nn.ReLU()]
        width_in = width
    layers.append(torch.nn.Linear(width_in, classes))
    return torch.nn.Sequential(*layers)


@register
class ImageClassification(Task):
    name = "image-classification"
    options_model = ImageOptions
    options: ImageOptions

    @cached_property
    def data(self) -> ImageSet:
        return load_images(self.options.dataset)

    @cached_property
    def order(self) -> np.ndarray:
        return np.random.default_rng([self.data_seed, 0x1A6E]).permutation(len(self.data.labels))

    @property
    def validation_size(self) -> int:
        n = len(self.data.labels)
        size = max(round(n * self.options.validation_fraction), 1)
        if size >= n:
            raise ConfigError(
                f"task image-classification: validationFraction "
                f"{self.options.validation_fraction} of {n} examples leaves none to train on"
            )
        return size

    @cached_property
    def standardised(self) -> torch.Tensor:
        """All images standardised per channel with the training pool's statistics."""
        pool = self.data.images[self.order[self.validation_size :]]
        mean = pool.mean(axis=(0, 2, 3), keepdims=True)
        std = pool.std(axis=(0, 2, 3), keepdims=True) + 1e-6
        return torch.from_numpy(((self.data.images - mean) / std).astype(np.float32))

    def train_indices(self, data_size: int) -> np.ndarray:
        pool = len(self.data.labels) - self.validation_size
        if data_size > pool:
            raise ConfigError(
                f"task image-classification: data size {data_size} examples is more than "
                f"dataset {self.data.source!r} holds after holding out {self.validation_size} "
                f"for validation ({pool}); use data sizes up to {pool} or a larger dataset"
            )
        return self.order[self.validation_size : self.validation_size + data_size]

    def validation_indices(self) -> np.ndarray:
        return self.order[: self.validation_size]

    def _examples(self, indices: np.ndarray) -> Batch:
        idx = torch.from_numpy(np.sort(indices))
        return self.standardised[idx], torch.from_numpy(self.data.labels)[idx]

    def train_subset(self, data_size: int) -> Batch:
        return self._examples(self.train_indices(data_size))

    def check_data_size(self, data_size: int) -> None:
        self.train_indices(data_size)

    def validation_set(self) -> Batch:
        return self._examples(self.validation_indices())

    def build_model(self, model_size: int) -> torch.nn.Module:
        _, channels, height, width = self.data.images.shape
        classes = len(self.data.classes)
        if self.options.model == "resnet":
            if height == 1:
                raise ConfigError(
                    "task image-classification: model 'resnet' needs images (N, H, W[, C]); "
                    f"dataset {self.data.source!r} holds flat vectors (use model 'mlp')"
                )
            return resnet(channels, model_size, self.options.depth, classes, min(height, width))
        return mlp(channels * height * width, model_size, self.options.depth, classes)

    def loss(
        self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        return F.cross_entropy(model(inputs).float(), targets)

    def describe(self, data_size: int) -> dict[str, Any]:
        return {
            "dataset": self.data.source,
            "classes": len(self.data.classes),
            "validation_examples": self.validation_size,
        }
