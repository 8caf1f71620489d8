"""Vectorised MurmurHash3 (x86, 32-bit, seed 0) of keys `f"{salt}:{user}"`, for re-salting the assignment.

The service assigns `mmh3.hash(f"{experiment}:{user}", signed=False) % n_treatments`. An A/A
calibration re-splits the same users with many other salts of the same hash family. Hashing
`runs x users` keys one by one with `mmh3` costs about a microsecond each; here the hash runs on
numpy arrays instead. When the salt's bytes plus ':' fill whole 4-byte blocks, MurmurHash3's
state after them depends on the salt only, and each user's blocks can be mixed once and reused
for every salt (Appleby, MurmurHash3, https://github.com/aappleby/smhasher).

>>> import mmh3, numpy as np
>>> salts = aa_salts("exp", runs=3)
>>> buckets = resalted_buckets(salts, np.array([7, 12345]), 2)
>>> all(buckets[r, i] == mmh3.hash(f"{salts[r]}:{u}", signed=False) % 2 for r in range(3) for i, u in enumerate([7, 12345]))
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from abtest.errors import AbtestError

_C1 = np.uint32(0xCC9E2D51)
_C2 = np.uint32(0x1B873593)
_N = np.uint32(0xE6546B64)
_F1 = np.uint32(0x85EBCA6B)
_F2 = np.uint32(0xC2B2AE35)
_FIVE = np.uint32(5)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _mix_k(k: np.ndarray) -> np.ndarray:
    return _rotl(k * _C1, 15) * _C2


def _mix_h(h: np.ndarray, k: np.ndarray) -> np.ndarray:
    h = _rotl(h ^ k, 13)
    return h * _FIVE + _N


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * _F1
    h = h ^ (h >> np.uint32(13))
    h = h * _F2
    return h ^ (h >> np.uint32(16))


def _words(data: np.ndarray) -> np.ndarray:
    """(n, 4 * b) uint8 -> (n, b) little-endian uint32 words."""
    return np.ascontiguousarray(data).view("<u4").astype(np.uint32)


def murmur3_32(keys: Sequence[bytes]) -> np.ndarray:
    """MurmurHash3 x86 32-bit (seed 0, unsigned) of each key; equals `mmh3.hash(key, signed=False)`."""
    out = np.empty(len(keys), dtype=np.uint32)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    for length, index in by_length.items():
        data = np.frombuffer(b"".join(keys[i] for i in index), dtype=np.uint8).reshape(len(index), length)
        h = np.zeros(len(index), dtype=np.uint32)
        out[index] = _finish(h, data, length)
    return out


def _finish(h: np.ndarray, data: np.ndarray, total: int) -> np.ndarray:
    """Continue the hash state `h` over `data` (rows of equal length) and finalise with length `total`."""
    blocks = data.shape[1] // 4
    if blocks:
        for k in _mix_k(_words(data[:, : 4 * blocks])).T:
            h = _mix_h(h, k)
    h = h ^ _tail_k(data[:, 4 * blocks :])
    return _fmix(h ^ np.uint32(total))


def _tail_k(tail: np.ndarray) -> np.ndarray:
    k = np.zeros(tail.shape[0], dtype=np.uint32)
    for j in range(tail.shape[1] - 1, -1, -1):
        k = (k << np.uint32(8)) | tail[:, j].astype(np.uint32)
    return _mix_k(k)  # mixing 0 gives 0, so an empty tail changes nothing


def aa_salts(experiment: str, runs: int, seed: int = 0) -> list[str]:
    """`runs` distinct salts derived from `experiment` and `seed`, padded so that salt + ':' fills whole 4-byte blocks."""
    base = f"{experiment}#aa{seed}/"
    width = len(str(max(runs - 1, 0)))
    while (len(base.encode()) + width + 1) % 4:
        width += 1
    return [f"{base}{run:0{width}d}" for run in range(runs)]


def _prefix_state(salt: str) -> np.ndarray:
    prefix = (salt + ":").encode()
    if len(prefix) % 4:
        raise AbtestError(f"salt {salt!r}: len(salt + ':') must be a multiple of 4 bytes; build salts with aa_salts")
    h = np.zeros(1, dtype=np.uint32)
    if prefix:
        data = np.frombuffer(prefix, dtype=np.uint8).reshape(1, -1)
        for k in _mix_k(_words(data)).T:
            h = _mix_h(h, k)
    return h[0]


def iter_resalted_buckets(
    salts: Sequence[str], users: np.ndarray, buckets: int, chunk: int = 64
) -> Iterator[np.ndarray]:
    """Yield (len(chunk of salts), len(users)) uint32 arrays of `hash(f"{salt}:{user}") % buckets`, `chunk` salts at a time."""
    users = np.asarray(users)
    text = users.astype(str)
    lengths = np.char.str_len(text)
    groups = []
    for length in np.unique(lengths):
        index = np.flatnonzero(lengths == length)
        data = np.frombuffer(text[index].astype(f"S{length}").tobytes(), dtype=np.uint8).reshape(len(index), length)
        blocks = length // 4
        ks = _mix_k(_words(data[:, : 4 * blocks])) if blocks else np.zeros((len(index), 0), dtype=np.uint32)
        groups.append((index, ks, _tail_k(data[:, 4 * blocks :]), int(length)))
    for start in range(0, len(salts), chunk):
        part = salts[start : start + chunk]
        states = np.array([_prefix_state(s) for s in part], dtype=np.uint32)[:, None]
        out = np.empty((len(part), len(users)), dtype=np.uint32)
        for index, ks, tail, length in groups:
            h = np.broadcast_to(states, (len(part), len(index)))
            for k in ks.T:
                h = _mix_h(h, k[None, :])
            h = h ^ tail[None, :]
            lengths_total = np.array([len((s + ":").encode()) + length for s in part], dtype=np.uint32)[:, None]
            out[:, index] = _fmix(h ^ lengths_total) % np.uint32(buckets)
        yield out


def resalted_buckets(salts: Sequence[str], users: np.ndarray, buckets: int) -> np.ndarray:
    """(len(salts), len(users)) array of `mmh3.hash(f"{salt}:{user}", signed=False) % buckets`."""
    return np.concatenate(list(iter_resalted_buckets(salts, users, buckets)), axis=0)
