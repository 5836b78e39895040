"""Tokenized corpora for the LM task: a memory-mapped file of token ids, nested subsets
from a keyed permutation, a disjoint validation set, and bad files refused in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from scalingstudy.contract import EXIT_CONFIG_ERROR, parse_result
from scalingstudy_trainer.errors import ConfigError
from scalingstudy_trainer.tasks.char_lm import CharLM
from scalingstudy_trainer.tokens import KeyedPermutation
from tests.training import run_trainer

CONTEXT = 15  # sequences of 16 tokens


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """A small tokenized sample: 40,000 uint16 ids of a repetitive 'language' (vocab 50)."""
    rng = np.random.default_rng(7)
    words = [rng.integers(0, 50, size=rng.integers(2, 6)) for _ in range(30)]
    ids = np.concatenate([words[i] for i in rng.integers(0, 30, size=12000)])[:40000]
    path = tmp_path / "train.bin"
    ids.astype(np.uint16).tofile(path)
    return path


def task(path: Path, **options: object) -> CharLM:
    return CharLM(
        {"tokens": str(path), "vocabSize": 50, "context": CONTEXT, "validationBytes": 1600,
         **options},
        0,
    )  # fmt: skip


def rows(batch: tuple[object, object]) -> set[bytes]:
    x, y = batch
    return {r.tobytes() for r in np.concatenate([x, y[:, -1:]], axis=1)}  # type: ignore[call-overload]


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (2, 3), (1000, 1), (4097, 2), (65536, 5)])
def test_the_keyed_permutation_is_a_permutation(n: int, seed: int) -> None:
    perm = KeyedPermutation(n, seed)
    out = perm(np.arange(n))
    assert sorted(out.tolist()) == list(range(n))
    assert np.array_equal(out, KeyedPermutation(n, seed)(np.arange(n)))  # deterministic
    if n > 100:
        assert not np.array_equal(out, np.arange(n))
        assert not np.array_equal(out, KeyedPermutation(n, seed + 1)(np.arange(n)))


def test_subsets_are_nested_prefixes_and_validation_is_disjoint(token_file: Path) -> None:
    t = task(token_file)
    small, large = rows(t.train_subset(3200)), rows(t.train_subset(12800))
    assert len(small) > 100 and small <= large
    assert not rows(t.validation_set()) & large  # (repetitive data: rows may coincide)
    x, _ = t.train_subset(3200)
    assert x.shape == (3200 // 16, CONTEXT) and str(x.dtype) == "torch.int32"
    vi, ti = set(t.validation_indices().tolist()), set(t.train_indices(30000).tolist())
    assert not vi & ti and len(vi) == 100
    described = t.describe(3200)
    assert described["data_unit"] == "tokens" and described["vocab_size"] == 50
    model = t.build_model(32)
    loss = t.loss(model, *t.train_subset(160))
    assert 0 < float(loss.detach()) < 2 * np.log(50)


def test_bad_token_options_are_config_errors(token_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds token id 4[0-9], not below vocabSize 40"):
        task(token_file, vocabSize=40).train_subset(3200)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01\x02\x03")
    with pytest.raises(ConfigError, match="3 bytes, not a positive multiple of 2"):
        task(odd).train_subset(16)
    with pytest.raises(ConfigError, match="vocabSize is required"):
        CharLM({"tokens": str(token_file)}, 0).validation_set()
    with pytest.raises(ConfigError, match="tokens or corpus"):
        task(token_file, corpus="/x").validation_set()
    with pytest.raises(ConfigError, match="needs 10000 sequences of 16 tokens"):
        task(token_file).train_subset(160000)


def test_the_trainer_on_a_token_file_and_its_errors_exit_78(
    token_file: Path, tmp_path: Path
) -> None:
    def run(options: dict[str, object]) -> tuple[int, str, Path]:
        result = tmp_path / "result.json"
        env = {
            **os.environ,
            "SCALINGSTUDY_TASK": json.dumps({"name": "char-lm", "options": {
                "tokens": str(token_file), "vocabSize": 50, "context": CONTEXT,
                "validationBytes": 1600, **options}}),
            "SCALINGSTUDY_TRAINING": json.dumps({"minSteps": 20, "maxSteps": 20,
                                                 "evalEvery": 10, "batchSize": 8}),
            "SCALINGSTUDY_DATA_SIZE": "3200", "SCALINGSTUDY_MODEL_SIZE": "16",
            "SCALINGSTUDY_SEED": "0", "SCALINGSTUDY_RESULT_FILE": str(result),
            "OMP_NUM_THREADS": "1",
        }  # fmt: skip
        proc = run_trainer(env, timeout=120)
        return proc.returncode, proc.stderr, result

    code, err, result = run({})
    assert code == 0, err
    assert parse_result(result.read_text()).loss > 0
    assert json.loads(result.read_text())["data_unit"] == "tokens"
    code, err, _ = run({"vocabSize": 10})
    lines = err.strip().splitlines()
    assert code == EXIT_CONFIG_ERROR and len(lines) == 1 and "not below vocabSize 10" in lines[0]
