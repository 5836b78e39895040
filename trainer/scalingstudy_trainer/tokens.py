"""Tokenized corpora: a flat binary file of token ids (uint16 or uint32, the layout
nanoGPT-style pipelines write), read a sequence at a time.

Nothing proportional to the file is ever held in memory: a subset reads only its own
sequences, with positioned reads (the kernel's page cache holds the file, not the
process: pages of a memory map would count in its resident set, readahead included, and
grow with the file), and the fixed order of the sequences is a keyed permutation
computed per index (a Feistel network over the next power of four, cycle-walked into
range) instead of a shuffled array of every sequence index.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from scalingstudy_sdk.order import half_bits, permutation_keys
from scalingstudy_trainer.errors import ConfigError

TokenDtype = Literal["uint16", "uint32"]
#: Bytes of the file's start and end that, with its size, make its digest (reading a
#: 10 GB file to hash it would cost more than a small trial).
_DIGEST_EDGE = 1 << 20


@dataclass(frozen=True)
class TokenFile:
    source: str
    dtype: TokenDtype
    tokens: int
    digest: str


def open_tokens(path: str, dtype: TokenDtype) -> TokenFile:
    """Map the file; ConfigError (one line) for a missing, empty or truncated one."""
    p = Path(path)
    item = np.dtype(dtype).itemsize
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ConfigError(f"task char-lm: tokens file {path!r}: {exc.strerror}") from None
    if size == 0 or size % item:
        raise ConfigError(
            f"task char-lm: tokens file {path!r} has {size} bytes, not a positive multiple of "
            f"{item} ({dtype}): wrong tokenDtype, or a truncated file"
        )
    digest = hashlib.sha256(str(size).encode())
    with p.open("rb") as handle:
        digest.update(handle.read(_DIGEST_EDGE))
        handle.seek(max(size - _DIGEST_EDGE, 0))
        digest.update(handle.read(_DIGEST_EDGE))
    return TokenFile(str(p), dtype, size // item, digest.hexdigest()[:16])


class KeyedPermutation:
    """A permutation of range(n) from a seed, evaluated per index in O(1) memory: the SDK's
    `scalingstudy_sdk.order.Order` (same keys, same rounds), vectorised with numpy."""

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("n must be positive")
        self.n = n
        self.half = half_bits(n)
        self.mask = np.uint64((1 << self.half) - 1)
        self.keys = np.array(permutation_keys(seed), dtype=np.uint64)

    def _round(self, x: NDArray[np.uint64], key: np.uint64) -> NDArray[np.uint64]:
        # splitmix64's finaliser of (x + key): a well-mixed keyed function of x.
        with np.errstate(over="ignore"):
            z = x + key
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        return z & self.mask

    def _feistel(self, x: NDArray[np.uint64]) -> NDArray[np.uint64]:
        shift = np.uint64(self.half)
        left, right = x >> shift, x & self.mask
        for key in self.keys:
            left, right = right, left ^ self._round(right, key)
        return (left << shift) | right

    def __call__(self, index: NDArray[np.int64]) -> NDArray[np.int64]:
        """The permuted positions of ``index`` (each in range(n))."""
        x = np.asarray(index, dtype=np.uint64)
        out = self._feistel(x)
        outside = out >= self.n
        while outside.any():  # cycle-walk: the domain is at most 4n, a few steps
            out[outside] = self._feistel(out[outside])
            outside = out >= self.n
        return out.astype(np.int64)


def sequences(file: TokenFile, starts: NDArray[np.int64], length: int) -> NDArray[np.int32]:
    """The ``length``-token sequences at sequence indices ``starts``, in index order (the
    file is read forward), as int32."""
    dtype = np.dtype(file.dtype)
    nbytes = length * dtype.itemsize
    ordered = np.sort(np.asarray(starts, dtype=np.int64))
    out = np.empty((len(ordered), length), dtype=np.int32)
    fd = os.open(file.source, os.O_RDONLY)
    try:
        for row, start in enumerate(ordered.tolist()):
            raw = os.pread(fd, nbytes, start * nbytes)
            if len(raw) != nbytes:
                raise ConfigError(f"task char-lm: tokens file {file.source!r} changed while read")
            out[row] = np.frombuffer(raw, dtype=dtype)
    finally:
        os.close(fd)
    return out
