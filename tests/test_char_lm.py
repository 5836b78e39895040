"""The char-lm task: nested subsets in bytes, a validation set no subset touches,
both model families, and clear errors for corpora that cannot work."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from scalingstudy_trainer.corpus import read_corpus
from scalingstudy_trainer.errors import ConfigError
from scalingstudy_trainer.tasks.char_lm import CharLM, TransformerLM, transformer_shape
from tests.training import descend

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A few text files of pseudo-sentences (60 KB), in nested folders."""
    rng = np.random.default_rng(0)
    root = tmp_path / "corpus"
    for i in range(6):
        folder = root / f"part{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        text = " ".join(rng.choice(WORDS, size=1800)) + "\n"
        (folder / f"doc{i}.txt").write_text(text)
    (root / "notes.md").write_text("not text\n")
    return root


def task(corpus: Path, **options: object) -> CharLM:
    return CharLM(
        {"corpus": str(corpus), "include": "*.txt", "validationBytes": 4096, **options}, 0
    )


def test_smaller_subsets_lie_inside_larger_ones(corpus: Path) -> None:
    t = task(corpus)
    sizes = [650, 1300, 5200, 20800]
    indices = [t.train_indices(s) for s in sizes]
    for small, large in itertools.pairwise(indices):
        np.testing.assert_array_equal(large[: small.size], small)
    x_small, y_small = t.train_subset(5200)
    x_large, _ = t.train_subset(20800)
    rows = {bytes(r.numpy()) for r in x_large}
    assert all(bytes(r.numpy()) in rows for r in x_small)
    # Targets are the inputs shifted by one byte.
    assert torch.equal(x_small[:, 1:], y_small[:, :-1])


def test_validation_never_overlaps_training(corpus: Path) -> None:
    t = task(corpus)
    pool = t.total_sequences - t.validation_sequences
    largest = pool * t.sequence
    train = set(t.train_indices(largest).tolist())
    validation = set(t.validation_indices().tolist())
    assert len(train) == pool and validation and not train & validation
    # The same validation set whatever the subset size; another data seed, another split.
    assert np.array_equal(task(corpus).validation_indices(), t.validation_indices())
    other = CharLM({"corpus": str(corpus), "include": "*.txt", "validationBytes": 4096}, 1)
    assert not np.array_equal(other.validation_indices(), t.validation_indices())


def test_data_size_is_counted_in_bytes(corpus: Path) -> None:
    t = task(corpus, context=64)
    x, _ = t.train_subset(6500)
    assert x.shape == (100, 64) and x.dtype == torch.uint8
    assert t.describe(6500)["data_used"] == 6500
    assert t.describe(6500)["corpus_files"] == 6  # notes.md is not *.txt


def test_include_selects_files_and_default_corpus_is_the_stdlib() -> None:
    stdlib = read_corpus("")
    assert stdlib.files > 300 and stdlib.data.size > 5_000_000
    assert stdlib.digest == read_corpus("").digest


@pytest.mark.parametrize("family", ["transformer", "lstm"])
def test_both_families_learn_and_count_parameters(corpus: Path, family: str) -> None:
    t = task(corpus, model=family, context=32)
    torch.manual_seed(0)
    model = t.build_model(32)
    x, y = t.train_subset(33 * 16)
    before = float(t.loss(model, x, y).detach())
    assert abs(before - np.log(256)) < 0.5  # near uniform over bytes at initialisation
    descend(t, model, x, y, steps=30, lr=1e-2)
    assert float(t.loss(model, x, y).detach()) < before - 1.0
    total = sum(p.numel() for p in model.parameters())
    non_embedding = t.non_embedding_parameters(model)
    assert non_embedding is not None and 0 < non_embedding < total


def test_transformer_grows_in_width_and_depth() -> None:
    assert transformer_shape(64) == (2, 1)
    assert transformer_shape(256) == (4, 4)
    assert transformer_shape(768) == (12, 12)
    _layers, heads = transformer_shape(96)
    assert 96 % heads == 0
    small, large = TransformerLM(64, 16), TransformerLM(256, 16)
    assert len(large.blocks) > len(small.blocks)


@pytest.mark.parametrize(
    ("setup", "options", "data_size", "fragment"),
    [
        (None, {"corpus": "/no/such/corpus"}, 1000, "'/no/such/corpus' does not exist"),
        ("empty_dir", {}, 1000, "no files matching '*'"),
        ("empty_files", {}, 1000, "are all empty"),
        ("dangling", {}, 1000, "cannot read"),
        ("tiny", {}, 1000, "leaves nothing to train on"),
        ("corpus", {"include": "*.txt", "validationBytes": 4096}, 10**7, "use data sizes up to"),
        ("corpus", {"include": "*.txt", "validationBytes": 4096}, 50, "smaller than one training"),
    ],
)
def test_corpora_that_cannot_work_are_configuration_errors(
    tmp_path: Path,
    corpus: Path,
    setup: str | None,
    options: dict[str, object],
    data_size: int,
    fragment: str,
) -> None:
    root = tmp_path / "c"
    if setup == "corpus":
        root = corpus
    elif setup is not None:
        root.mkdir()
    if setup == "empty_files":
        (root / "a.txt").write_text("")
    if setup == "dangling":
        # Root reads every permission-protected file, so an unreadable file is made the
        # one way root cannot read it either: a name that points nowhere.
        (root / "a.txt").write_text("some text\n" * 100)
        (root / "b.txt").symlink_to(tmp_path / "missing.txt")
    if setup == "tiny":
        (root / "a.txt").write_text("x" * 2000)
    t = CharLM({"corpus": str(root), **options}, 0)
    with pytest.raises(ConfigError, match=r"corpus|char-lm") as info:
        t.check_data_size(data_size)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
