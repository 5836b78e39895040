"""Nested training subsets that do not depend on how many examples are asked for.

Example i of a task's stream is a pure function of (data seed, i): examples are
generated in fixed blocks, each from its own seed. So the first m examples are
the same whether a trial asks for m or for 10*m, and every smaller subset lies
inside every larger one (DESIGN §2.1) without materialising the largest one.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

BLOCK = 1024
TRAIN_STREAM = 0
VALIDATION_STREAM = 1


def stream_normal(data_seed: int, stream: int, count: int, dim: int) -> NDArray[np.float32]:
    """The first ``count`` rows of an endless stream of standard-normal vectors."""
    blocks = []
    for block in range((count + BLOCK - 1) // BLOCK):
        rng = np.random.default_rng([data_seed, stream, block])
        blocks.append(rng.standard_normal((BLOCK, dim), dtype=np.float32))
    if not blocks:
        return np.zeros((0, dim), dtype=np.float32)
    return np.concatenate(blocks)[:count]


def prefix_permutation(data_seed: int, pool: int) -> NDArray[np.int64]:
    """A fixed order of a finite pool; subsets are its prefixes."""
    return np.random.default_rng([data_seed, 7919]).permutation(pool)
