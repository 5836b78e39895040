"""The image-classification task on real data that ships in a package (scikit-learn's
handwritten digits), and on the user's own files: .npz archives and class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scalingstudy_trainer.errors import ConfigError
from scalingstudy_trainer.tasks.image_classification import ImageClassification
from tests.training import descend


def test_digits_subsets_are_nested_and_disjoint_from_validation() -> None:
    t = ImageClassification({}, 0)
    assert t.data.images.shape == (1797, 1, 8, 8) and len(t.data.classes) == 10
    small, large = t.train_indices(100), t.train_indices(1400)
    np.testing.assert_array_equal(large[:100], small)
    validation = set(t.validation_indices().tolist())
    assert len(validation) == 359 and not validation & set(large.tolist())
    x, y = t.train_subset(100)
    assert x.shape == (100, 1, 8, 8) and y.dtype == torch.int64
    with pytest.raises(ConfigError, match="use data sizes up to 1438"):
        t.check_data_size(1500)


@pytest.mark.parametrize(("family", "width"), [("mlp", 32), ("resnet", 8)])
def test_both_families_learn_digits(family: str, width: int) -> None:
    t = ImageClassification({"model": family, "depth": 1}, 0)
    torch.manual_seed(0)
    model = t.build_model(width)
    x, y = t.train_subset(256)
    vx, vy = t.validation_set()
    before = float(t.loss(model, vx, vy).detach())
    descend(t, model, x, y, steps=40, lr=3e-3)
    model.eval()
    with torch.no_grad():
        after = float(t.loss(model, vx, vy))
        accuracy = float((model(vx).argmax(1) == vy).float().mean())
    assert after < before - 1.0 and accuracy > 0.8


def test_npz_archive_channels_last_and_arbitrary_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 6, 5, 3), dtype=np.uint8)
    labels = np.array(["cat", "dog"] * 25)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    t = ImageClassification({"dataset": str(tmp_path / "d.npz"), "model": "resnet"}, 0)
    assert t.data.images.shape == (50, 3, 6, 5) and float(t.data.images.max()) <= 1.0
    assert t.data.classes == ["cat", "dog"] and set(t.data.labels.tolist()) == {0, 1}
    x, _ = t.train_subset(10)
    assert t.build_model(4)(x).shape == (10, 2)


def test_class_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name in ("circle", "square", "triangle"):
        (tmp_path / name).mkdir()
        for i in range(4):
            pixels = rng.integers(0, 256, size=(7, 7), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(tmp_path / name / f"{i}.png")
    t = ImageClassification({"dataset": str(tmp_path), "validationFraction": 0.25}, 0)
    assert t.data.images.shape == (12, 1, 7, 7) and t.data.classes == [
        "circle",
        "square",
        "triangle",
    ]
    assert t.validation_size == 3


def _broken_npz(path: Path) -> str:
    np.savez(path / "d.npz", pixels=np.zeros((4, 2)), labels=np.zeros(4))
    return str(path / "d.npz")


def _mixed_sizes(path: Path) -> str:
    for name, size in (("a", 4), ("b", 5)):
        (path / name).mkdir()
        Image.fromarray(np.zeros((size, size), dtype=np.uint8), mode="L").save(
            path / name / "0.png"
        )
    return str(path)


def _flat_for_resnet(path: Path) -> str:
    np.savez(path / "f.npz", x=np.zeros((10, 16), dtype=np.float32), y=np.arange(10) % 2)
    return str(path / "f.npz")


@pytest.mark.parametrize(
    ("make", "options", "fragment"),
    [
        (lambda p: str(p / "nope"), {}, "does not exist"),
        (_broken_npz, {}, "needs an image array named one of"),
        (_mixed_sizes, {}, "resize the images to one size"),
        (_flat_for_resnet, {"model": "resnet"}, "holds flat vectors"),
    ],
)
def test_datasets_that_cannot_work_are_configuration_errors(
    tmp_path: Path, make: object, options: dict[str, object], fragment: str
) -> None:
    dataset = make(tmp_path)  # type: ignore[operator]
    t = ImageClassification({"dataset": dataset, **options}, 0)
    with pytest.raises(ConfigError) as info:
        t.check_data_size(2)
        t.build_model(4)
    assert fragment in str(info.value) and "\n" not in str(info.value)
