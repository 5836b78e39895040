"""The fixed order of a dataset's items from which every trial takes its nested subset:
a keyed permutation of range(n), evaluated per position in O(1) memory (a Feistel network
over the next power of four, cycle-walked into range). Validation takes the first
positions, training the next ones, so every smaller training subset lies inside every
larger one and never touches validation, whatever size a trial asks for.

The built-in trainer's token-file task evaluates the same permutation with numpy
(`scalingstudy_trainer.tokens.KeyedPermutation`): same keys, same arithmetic.
"""

from __future__ import annotations

ROUNDS = 4
_MASK64 = (1 << 64) - 1
#: The key stream's domain separator (the same for every dataset).
KEY_DOMAIN = 0x746F6B


def _splitmix64(state: int) -> tuple[int, int]:
    """The next state and output of splitmix64."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def permutation_keys(seed: int) -> tuple[int, ...]:
    """The round keys of ``seed``'s permutation: nonzero 63-bit integers."""
    state = ((seed & _MASK64) * 0x100000001B3 ^ KEY_DOMAIN) & _MASK64
    keys: list[int] = []
    while len(keys) < ROUNDS:
        state, out = _splitmix64(state)
        if out >> 1:
            keys.append(out >> 1)
    return tuple(keys)


def half_bits(n: int) -> int:
    """Bits of each half of the Feistel domain (4 ** half_bits >= n)."""
    return (max(2, (n - 1).bit_length()) + 1) // 2


def _round(x: int, key: int, mask: int) -> int:
    # splitmix64's finaliser of (x + key): a well-mixed keyed function of x.
    z = (x + key) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & mask


class Order:
    """Position -> item index of a fixed permutation of range(n)."""

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError(f"a dataset needs at least one item (got {n})")
        self.n = n
        self.half = half_bits(n)
        self.mask = (1 << self.half) - 1
        self.keys = permutation_keys(seed)

    def _feistel(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for key in self.keys:
            left, right = right, left ^ _round(right, key, self.mask)
        return (left << self.half) | right

    def __getitem__(self, position: int) -> int:
        if not 0 <= position < self.n:
            raise IndexError(f"position {position} outside range({self.n})")
        out = self._feistel(position)
        while out >= self.n:  # cycle-walk: the domain is at most 4n, a few steps
            out = self._feistel(out)
        return out

    def positions(self, start: int, stop: int) -> list[int]:
        """Item indices at positions [start, stop)."""
        return [self[p] for p in range(start, min(stop, self.n))]
