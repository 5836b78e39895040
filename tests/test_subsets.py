"""Nested subsets (DESIGN §2.1) and a validation set that no subset touches."""

from __future__ import annotations

import numpy as np
import pytest

from scalingstudy_trainer.subsets import BLOCK, prefix_permutation, stream_normal


@pytest.mark.parametrize(
    ("small", "large"), [(1, 2), (100, 6400), (BLOCK - 1, BLOCK + 1), (3000, 5000)]
)
def test_smaller_subset_is_a_prefix_of_larger(small: int, large: int) -> None:
    a = stream_normal(7, 0, small, 5)
    b = stream_normal(7, 0, large, 5)
    assert a.shape == (small, 5)
    np.testing.assert_array_equal(a, b[:small])


def test_data_seed_changes_the_data() -> None:
    assert not np.array_equal(stream_normal(1, 0, 10, 3), stream_normal(2, 0, 10, 3))


def test_validation_stream_disjoint_from_training() -> None:
    train = stream_normal(0, 0, 5000, 4)
    validation = stream_normal(0, 1, 4096, 4)
    rows = {tuple(r) for r in train}
    assert not any(tuple(r) in rows for r in validation)


def test_prefix_permutation_is_fixed_and_complete() -> None:
    p = prefix_permutation(3, 1000)
    np.testing.assert_array_equal(p, prefix_permutation(3, 1000))
    assert sorted(p.tolist()) == list(range(1000))
