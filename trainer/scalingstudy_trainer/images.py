"""Labelled images from files: an ``.npz`` archive, a folder per class, or the
handwritten digits that ship inside scikit-learn (1,797 8x8 images, 10 classes;
BSD-3 licensed, from the UCI optical-digits set), which need no download."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scalingstudy_trainer.errors import ConfigError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
IMAGE_KEYS = ("x", "images", "X", "data")
LABEL_KEYS = ("y", "labels", "Y", "targets")


@dataclass(frozen=True)
class ImageSet:
    images: NDArray[np.float32]
    """(N, C, H, W), scaled to [0, 1]."""
    labels: NDArray[np.int64]
    """(N,), classes 0..K-1."""
    classes: list[str]
    source: str


def _channels_first(x: NDArray[np.float32], source: str) -> NDArray[np.float32]:
    if x.ndim == 2:  # flat vectors: one channel, one row
        return x[:, None, None, :]
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim == 4:
        return x if x.shape[1] <= 4 and x.shape[3] > 4 else np.moveaxis(x, 3, 1)
    raise ConfigError(
        f"dataset {source!r}: images must be (N, D), (N, H, W) or (N, H, W, C); got shape {x.shape}"
    )


def _scaled(x: NDArray[np.generic]) -> NDArray[np.float32]:
    if np.issubdtype(x.dtype, np.integer):
        top = 255.0 if x.dtype == np.uint8 else float(x.max() or 1)
        return (x.astype(np.float32) / top).astype(np.float32)
    out = x.astype(np.float32)
    if not np.isfinite(out).all():
        raise ConfigError("dataset: images contain NaN or infinite values")
    return out


def _labelled(
    images: NDArray[np.float32], raw: NDArray[np.generic], source: str, names: list[str] | None
) -> ImageSet:
    if raw.ndim != 1 or raw.shape[0] != images.shape[0]:
        raise ConfigError(
            f"dataset {source!r}: {images.shape[0]} images but labels of shape {raw.shape}"
        )
    values, labels = np.unique(raw, return_inverse=True)
    if values.size < 2:
        raise ConfigError(f"dataset {source!r}: needs at least 2 classes, found {values.size}")
    classes = names if names is not None else [str(v) for v in values]
    return ImageSet(
        images=np.ascontiguousarray(images),
        labels=labels.astype(np.int64),
        classes=classes,
        source=source,
    )


def load_digits() -> ImageSet:
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ConfigError(
            "dataset 'digits' needs scikit-learn (pip install 'scalingstudy[datasets]')"
        ) from None
    bunch = sklearn_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return _labelled(images, bunch.target, "digits", [str(c) for c in bunch.target_names])


def load_npz(path: Path) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            x_key = next((k for k in IMAGE_KEYS if k in keys), None)
            y_key = next((k for k in LABEL_KEYS if k in keys), None)
            if x_key is None or y_key is None:
                raise ConfigError(
                    f"dataset {str(path)!r}: needs an image array named one of "
                    f"{', '.join(IMAGE_KEYS)} and a label array named one of "
                    f"{', '.join(LABEL_KEYS)}; it has {', '.join(sorted(keys)) or 'none'}"
                )
            x, y = archive[x_key], archive[y_key]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"dataset {str(path)!r}: cannot read as .npz ({exc})") from None
    return _labelled(_channels_first(_scaled(x), str(path)), y, str(path), None)


def load_folders(root: Path) -> ImageSet:
    """root/<class>/<image>; every image the size of the first, greyscale or RGB."""
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise ConfigError(
            f"dataset {str(root)!r}: expected a folder per class, found {len(classes)} folder(s)"
        )
    arrays: list[NDArray[np.uint8]] = []
    labels: list[int] = []
    mode: str | None = None
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"dataset {str(root)!r}: class folder {name!r} has no images")
        for file in files:
            try:
                with Image.open(file) as img:
                    mode = mode or ("L" if img.mode in ("1", "L", "I;16") else "RGB")
                    array = np.asarray(img.convert(mode), dtype=np.uint8)
            except (OSError, UnidentifiedImageError) as exc:
                raise ConfigError(f"dataset: cannot read image {str(file)!r}: {exc}") from None
            if arrays and array.shape != arrays[0].shape:
                raise ConfigError(
                    f"dataset: image {str(file)!r} is {array.shape}, the first image is "
                    f"{arrays[0].shape}; resize the images to one size"
                )
            arrays.append(array)
            labels.append(label)
    x = _channels_first(_scaled(np.stack(arrays)), str(root))
    return _labelled(x, np.asarray(labels), str(root), classes)


def load_images(dataset: str) -> ImageSet:
    if dataset == "digits":
        return load_digits()
    path = Path(dataset)
    if not path.exists():
        raise ConfigError(f"dataset {dataset!r} does not exist (or use 'digits')")
    if path.is_dir():
        return load_folders(path)
    return load_npz(path)
