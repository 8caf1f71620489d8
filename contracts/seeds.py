"""The seed of a request, shared by the service and by `sim.run`'s in-process client.

A recommender that draws at random (`random`, tie-breaks, fallbacks) draws from `Request.seed`.
When the client sends the simulated time, the seed is a pure function of (service seed, session,
ts), so a seeded simulation gets the same answers from the service and from `local:` runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import mmh3
import numpy as np
from mmh3 import hash64

from contracts.murmur import hash64_rows

SEED_MASK = 2**63 - 1  # request seeds are non-negative int64


def request_seed(service_seed: int, session: int | None, ts: int | None) -> int:
    """MurmurHash3 of "service_seed:session:ts" (ts in epoch ms); the server's clock when ts is None."""
    if ts is None:
        return time.time_ns() & SEED_MASK
    return mmh3.hash64(f"{service_seed}:{session}:{ts}", signed=False)[0] & SEED_MASK


def request_seeds(service_seed: int, sessions: Sequence[int | None], ts: Sequence[int | None]) -> np.ndarray:
    """`request_seed` of many requests, as uint64.

    Requests whose session and ts are plain non-negative ints (the simulator's, and any validated
    request's) are hashed as a batch in numpy (`_hashed_seeds`), the others one by one; both give
    the seeds of `request_seed` to the bit (tests/contracts/test_seeds.py).
    """
    kinds = set(map(type, sessions))
    kinds.update(map(type, ts))
    if kinds == {int} and len(sessions) == len(ts):  # plain ints only: their text is their decimal digits
        try:
            ids, stamps = np.fromiter(sessions, np.int64, len(sessions)), np.fromiter(ts, np.int64, len(ts))
        except OverflowError:  # an id beyond int64: one by one below
            pass
        else:
            if min(ids.min(), stamps.min()) >= 0:
                return _hashed_seeds(service_seed, ids, stamps)
    seeds = [
        time.time_ns() & SEED_MASK if t is None else hash64(f"{service_seed}:{session}:{t}", signed=False)[0] & SEED_MASK
        for session, t in zip(sessions, ts, strict=True)
    ]
    return np.array(seeds, dtype=np.uint64).reshape(len(seeds))


def _hashed_seeds(service_seed: int, sessions: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """`request_seed` of requests whose sessions and ts are non-negative int64 (at least one), without
    a string per request: the keys "service_seed:session:ts" of each length are written as one
    byte matrix of ASCII digits, and each matrix is hashed at once (`hash64_rows`)."""
    prefix = np.frombuffer(f"{service_seed}:".encode(), dtype=np.uint8)
    start = len(prefix)
    session_digits = np.searchsorted(_POWERS_OF_10, sessions, side="right") + 1
    ts_digits = np.searchsorted(_POWERS_OF_10, ts, side="right") + 1
    shapes = session_digits * 32 + ts_digits  # each at most 19 digits
    kinds = [int(shapes[0])] if shapes.min() == shapes.max() else np.unique(shapes).tolist()
    seeds = np.empty(len(ts), dtype=np.uint64)
    for shape in kinds:
        at = slice(None) if len(kinds) == 1 else np.flatnonzero(shapes == shape)
        n_session, n_ts = divmod(shape, 32)
        some_sessions, some_ts = sessions[at], ts[at]
        length = start + n_session + 1 + n_ts
        keys = np.zeros((len(some_ts), (length // 16 + 1) * 16), dtype=np.uint8)
        keys[:, :start] = prefix
        keys[:, start : start + n_session] = _digits(some_sessions, n_session)
        keys[:, start + n_session] = ord(":")
        keys[:, start + n_session + 1 : length] = _digits(some_ts, n_ts)
        seeds[at] = hash64_rows(keys, length)
    return seeds & np.uint64(SEED_MASK)


_POWERS_OF_10 = 10 ** np.arange(1, 19, dtype=np.int64)  # a number reaches as many of these as it has digits less one
# The four ASCII digits of 0..9999 as one little-endian uint32 each: a number's digits four at a time.
_FOUR_DIGITS = (np.arange(10_000)[:, None] // np.array([1000, 100, 10, 1]) % 10 + ord("0")).astype(np.uint8).view("<u4").reshape(10_000)


def _digits(values: np.ndarray, n: int) -> np.ndarray:
    """The `n` decimal digits of each of `values` (int64 of at most `n` digits) in ASCII, shape (len(values), n)."""
    groups = (n + 3) // 4
    out = np.empty((len(values), groups), dtype="<u4")
    for group in range(groups - 1, -1, -1):
        quotient = values // 10_000
        out[:, group] = _FOUR_DIGITS[values - quotient * 10_000]
        values = quotient
    return out.view(np.uint8)[:, 4 * groups - n :]
