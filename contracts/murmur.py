"""MurmurHash3 x64_128 of many byte strings at once, in numpy.

`hash64_rows` gives, for every row of a byte matrix, the first 64-bit half of the hash that
`mmh3.hash64(row, signed=False)[0]` gives for that row alone: the same function over uint64
columns, so a batch costs a few dozen array operations instead of a Python call per string.
Reference: Austin Appleby's MurmurHash3_x64_128 (SMHasher, `MurmurHash3.cpp`).
"""

from __future__ import annotations

import numpy as np

_C1 = np.uint64(0x87C3_7B91_1142_53D5)
_C2 = np.uint64(0x4CF5_AD43_2745_937F)
_FMIX1 = np.uint64(0xFF51_AFD7_ED55_8CCD)
_FMIX2 = np.uint64(0xC4CE_B9FE_1A85_EC53)
_N1 = np.uint64(0x52DC_E729)
_N2 = np.uint64(0x3849_5AB5)
_FIVE = np.uint64(5)
_33 = np.uint64(33)


def hash64_rows(rows: np.ndarray, length: int | None = None, seed: int = 0) -> np.ndarray:
    """The first half of MurmurHash3 x64_128 of each row's first `length` bytes, uint64 of shape (n,).

    `rows` is uint8 of shape (n, width) and `length` at most width (all of it by default). Rows
    whose width is a multiple of 16 are read in place, and then every byte past `length` must be
    zero; other rows are copied into such a matrix first. `seed` is the hash's seed
    (0..2**32-1), as `mmh3.hash64`'s.
    """
    n, width = rows.shape
    length = width if length is None else length
    blocks, tail = divmod(length, 16)
    if width % 16 or width < 16 * blocks + (16 if tail else 0) or not rows.flags.c_contiguous:
        padded = np.zeros((n, 16 * (blocks + 1)), dtype=np.uint8)
        padded[:, :length] = rows[:, :length]
        rows = padded
    words = rows.view("<u8")
    h1 = np.full(n, seed, dtype=np.uint64)
    h2 = h1.copy()
    k = np.empty(n, dtype=np.uint64)
    for block in range(blocks):
        _mix_k(words[:, 2 * block], _C1, 31, _C2, k)
        h1 ^= k
        _rotl(h1, 27, k)
        h1 += h2
        h1 *= _FIVE
        h1 += _N1
        _mix_k(words[:, 2 * block + 1], _C2, 33, _C1, k)
        h2 ^= k
        _rotl(h2, 31, k)
        h2 += h1
        h2 *= _FIVE
        h2 += _N2
    # The tail's bytes, zero-padded to two words: a zero word mixes to zero, so no case split.
    if tail > 8:
        h2 ^= _mix_k(words[:, 2 * blocks + 1], _C2, 33, _C1, k)
    if tail:
        h1 ^= _mix_k(words[:, 2 * blocks], _C1, 31, _C2, k)
    size = np.uint64(length)
    h1 ^= size
    h2 ^= size
    h1 += h2
    h2 += h1
    _fmix(h1, k)
    _fmix(h2, k)
    h1 += h2
    return h1


def _rotl(x: np.ndarray, r: int, scratch: np.ndarray) -> None:
    """x = rotl64(x, r), in place."""
    np.right_shift(x, np.uint64(64 - r), out=scratch)
    x <<= np.uint64(r)
    x |= scratch


def _mix_k(word: np.ndarray, first: np.uint64, r: int, second: np.uint64, out: np.ndarray) -> np.ndarray:
    """out = rotl64(word * first, r) * second: a block word's mixing."""
    np.multiply(word, first, out=out)
    scratch = out >> np.uint64(64 - r)
    out <<= np.uint64(r)
    out |= scratch
    out *= second
    return out


def _fmix(h: np.ndarray, scratch: np.ndarray) -> None:
    """MurmurHash3's 64-bit finaliser, in place."""
    for factor in (_FMIX1, _FMIX2):
        np.right_shift(h, _33, out=scratch)
        h ^= scratch
        h *= factor
    np.right_shift(h, _33, out=scratch)
    h ^= scratch
