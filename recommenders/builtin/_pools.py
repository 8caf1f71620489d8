"""Seeded, exactly uniform picks from pools of tracks that skip the session's tracks.

A `Pool` orders the released tracks and cuts that order into segments: one segment for
`random` and `top_pop` (ordered by id or by score), one per artist for `sticky_artist`. A pick
takes a segment, a 64-bit key derived from the request, the tracks to skip and an optional cap
`k` (choose among the first `k` candidates only), and returns the r-th candidate with
r = key mod (number of candidates): uniform over the candidates, and 1 / (number of candidates)
is its propensity. The single form `pick_one` (plain Python, a few microseconds) and the batched
form `pick_many` (numpy, no Python loop over requests) give the same answer by construction.

Keys come from a splitmix64 hash of (recommender salt, request seed, user, track, history
length), so a fixed `Request.seed` gives a fixed answer without building a numpy generator per
request (which alone costs tens of microseconds).
"""

from __future__ import annotations

import threading
import zlib
from array import array
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np

from recommenders.base import NO_DAY, Recommendation, Request, RequestBatch

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB
# Odd multipliers that spread user, track and history length over the 64-bit key before mixing.
_USER_MUL = 0xD6E8FEB86659FD93
_TRACK_MUL = 0xA0761D6478BD642F
_HISTORY_MUL = 0xE7037ED1A0B428DB


def mix64(z: int) -> int:
    """splitmix64's finaliser on a Python int: a bijective, well-spread 64-bit hash."""
    z = (z + _GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * _MUL1) & MASK64
    z = ((z ^ (z >> 27)) * _MUL2) & MASK64
    return z ^ (z >> 31)


def mix64_array(z: np.ndarray) -> np.ndarray:
    """`mix64` over a uint64 array (numpy arithmetic wraps modulo 2**64, as the masks do above)."""
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MUL1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MUL2)
    return z ^ (z >> np.uint64(31))


def make_salt(name: str, seed: int) -> int:
    """A recommender's salt: its name and its `seed` parameter, so two recommenders draw apart."""
    return mix64((zlib.crc32(name.encode()) << 32) ^ (seed & MASK64))


def request_key(salt: int, request: Request) -> int:
    """The 64-bit key of one request; `batch_keys` computes the same for many."""
    base = mix64(salt ^ (request.seed & MASK64))
    return mix64(
        (base + (request.user & MASK64) * _USER_MUL + (request.track & MASK64) * _TRACK_MUL + len(request.history) * _HISTORY_MUL)
        & MASK64
    )


class Batch(NamedTuple):
    """Arrays of a batch of requests, built once per `recommend_batch` call.

    Attributes:
        tracks: the track just played, shape (n,), int64.
        keys: the per-request 64-bit keys (`request_key`), shape (n,), uint64.
        skip_tracks: every track to skip (each request's history and its track), flat, int64.
        skip_owner: the request index of each entry of `skip_tracks`, int64.
    """

    tracks: np.ndarray
    keys: np.ndarray
    skip_tracks: np.ndarray
    skip_owner: np.ndarray


def batch_arrays(requests: Sequence[Request], salt: int) -> Batch:
    """`batch_columns` of `requests`."""
    return batch_columns(RequestBatch.of(requests), salt)


def batch_columns(batch: RequestBatch, salt: int) -> Batch:
    """The arrays a pick needs of `batch`, with the requests' keys (`request_key`, computed for many)."""
    n = len(batch)
    length = np.diff(batch.offsets)
    owner = np.repeat(np.arange(n, dtype=np.int64), length)
    base = mix64_array(np.uint64(salt) ^ batch.seeds)
    keys = mix64_array(
        base + batch.users.view(np.uint64) * np.uint64(_USER_MUL) + batch.tracks.view(np.uint64) * np.uint64(_TRACK_MUL)
        + length.view(np.uint64) * np.uint64(_HISTORY_MUL)
    )
    return Batch(
        tracks=batch.tracks,
        keys=keys,
        skip_tracks=np.concatenate([batch.history, batch.tracks]),
        skip_owner=np.concatenate([owner, np.arange(n, dtype=np.int64)]),
    )


class Pool:
    """Tracks in a fixed order, cut into segments; `position` maps a track to its index or -1.

    Args:
        order: track ids, shape (m,), each at most once, grouped by segment.
        offsets: segment boundaries into `order`, shape (segments + 1,), non-decreasing.
        n_tracks: size of the catalog (track ids run 0..n_tracks-1).
    """

    def __init__(self, order: np.ndarray, offsets: np.ndarray, n_tracks: int) -> None:
        self.order = np.ascontiguousarray(order, dtype=np.int64)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.n_tracks = n_tracks
        self.position = np.full(n_tracks, -1, dtype=np.int64)
        self.position[self.order] = np.arange(len(self.order), dtype=np.int64)
        # Plain-Python mirrors for the single form: indexing an array.array is ~10x cheaper than numpy.
        self.order_py = array("q", self.order.tobytes())
        self.position_py = array("q", self.position.tobytes())
        self.offsets_py = self.offsets.tolist()


def pick_one(pool: Pool, segment: int, key: int, skip: Iterable[int], cap: int | None = None) -> tuple[int, int]:
    """The r-th track of `segment` not in `skip`, r = key mod min(cap, candidates).

    Returns (track, number of candidates it was drawn from), or (-1, 0) when every track of the
    segment is skipped.
    """
    start = pool.offsets_py[segment]
    stop = pool.offsets_py[segment + 1]
    position = pool.position_py
    n_tracks = pool.n_tracks
    skipped = sorted({p for p in (position[t] for t in skip if 0 <= t < n_tracks) if start <= p < stop})
    candidates = stop - start - len(skipped)
    if candidates <= 0:
        return -1, 0
    if cap is not None and cap < candidates:
        candidates = cap
    p = start + key % candidates
    for q in skipped:  # walk past the skipped positions at or before p
        if q > p:
            break
        p += 1
    return pool.order_py[p], candidates


_new_recommendation = partial(tuple.__new__, Recommendation)


def make_recommendations(tracks: np.ndarray, propensity: np.ndarray) -> list[Recommendation]:
    """Recommendation tuples from two arrays (NaN propensity: None), built in C (half the cost of calling the class)."""
    n = len(tracks)
    propensities = propensity.tolist()
    if np.isnan(propensity).any():
        propensities = [None if p != p else p for p in propensities]
    return list(map(_new_recommendation, zip(tracks.tolist(), propensities, [None] * n, [None] * n, strict=True)))


def answers_to_columns(answers: Sequence[Recommendation]) -> tuple[np.ndarray, np.ndarray]:
    """(tracks int64, propensities float64 with NaN for None) of `Recommendation`s."""
    tracks = np.array([answer.track for answer in answers], dtype=np.int64).reshape(len(answers))
    propensity = np.array([np.nan if answer.propensity is None else answer.propensity for answer in answers], dtype=np.float64).reshape(len(answers))
    return tracks, propensity


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique, minus its overhead, which dominates here)."""
    values = np.sort(values)
    if len(values) > 1:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values


def pick_many(
    pool: Pool,
    segments: np.ndarray,
    keys: np.ndarray,
    skip_tracks: np.ndarray,
    skip_owner: np.ndarray,
    cap: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`pick_one` for many requests at once; a segment of -1 means "no pool" and gives -1.

    Returns (tracks, candidates), both int64 of shape (n,), with -1 / 0 where nothing is left.
    The r-th candidate is the least fixed point of p = start + r + #(skipped positions <= p),
    reached by iterating from p = start + r (at most one step per skipped position).
    """
    n = len(segments)
    has_segment = segments >= 0
    seg = np.where(has_segment, segments, 0)
    start = pool.offsets[seg]
    stop = np.where(has_segment, pool.offsets[seg + 1], start)
    valid = (skip_tracks >= 0) & (skip_tracks < pool.n_tracks)
    pos = pool.position[np.where(valid, skip_tracks, 0)]
    inside = valid & (pos >= start[skip_owner]) & (pos < stop[skip_owner])
    # Unique (request, position) pairs, sorted: one combined int64 key per pair.
    width = len(pool.order) + 1
    pairs = _sorted_unique(skip_owner[inside] * width + pos[inside])
    owner = pairs // width
    skipped_count = np.bincount(owner, minlength=n)
    candidates = stop - start - skipped_count
    if cap is not None:
        candidates = np.minimum(candidates, cap)
    ok = candidates > 0
    r = (keys % np.maximum(candidates, 1).astype(np.uint64)).astype(np.int64)
    first = np.searchsorted(owner, np.arange(n), side="left")
    base = np.arange(n, dtype=np.int64) * width
    p = start + r
    for _ in range(len(pairs) + 1):
        moved = start + r + (np.searchsorted(pairs, base + p, side="right") - first)
        if np.array_equal(moved, p):
            break
        p = moved
    tracks = np.where(ok, pool.order[np.where(ok, p, 0)] if len(pool.order) else -1, -1)
    return tracks, np.where(ok, candidates, 0)


MAX_CACHED_DAYS = 4  # pools kept per recommender (each costs ~32 bytes per track)


class ReleasedPools:
    """Pools of the tracks released by a simulated day, built on first use and cached per day.

    `build(released)` gets a boolean mask over the catalog. Days after the last release share
    one pool (so does `day=None`); days before the first release use the first release day's.
    At most `MAX_CACHED_DAYS` pools are kept, the oldest built dropped first.
    """

    def __init__(self, release_day: np.ndarray, build: Callable[[np.ndarray], Pool]) -> None:
        self._release_day = release_day
        self._first = int(release_day.min()) if len(release_day) else 0
        self._last = int(release_day.max()) if len(release_day) else 0
        self._build = build
        self._cache: dict[int, Pool] = {}
        self._lock = threading.Lock()

    def day_key(self, day: int | None) -> int:
        """The cache key of `day`: clipped to [first release day, last release day]."""
        if day is None or day >= self._last:
            return self._last
        return max(day, self._first)

    def for_key(self, key: int) -> Pool:
        pool = self._cache.get(key)
        if pool is None:
            with self._lock:  # a miss is rare (once per day); threads of one worker may race on it
                pool = self._cache.get(key)
                if pool is None:
                    if len(self._cache) >= MAX_CACHED_DAYS:  # simulated days move forward: drop the oldest
                        del self._cache[next(iter(self._cache))]
                    pool = self._cache[key] = self._build(self._release_day <= key)
        return pool

    def for_day(self, day: int | None) -> Pool:
        return self.for_key(self.day_key(day))

    def groups(self, requests: Sequence[Request]) -> list[tuple[int, list[int] | None]]:
        """Split a batch by day key: [(key, indices)], with indices None when all share one key."""
        days = {request.day for request in requests}
        if len(days) == 1:
            return [(self.day_key(days.pop()), None)]
        by_key: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            by_key.setdefault(self.day_key(request.day), []).append(i)
        if len(by_key) == 1:
            return [(next(iter(by_key)), None)]
        return list(by_key.items())

    def column_groups(self, days: np.ndarray) -> list[tuple[int, np.ndarray | None]]:
        """`groups` of a `RequestBatch`'s days (`NO_DAY` for None): [(key, indices)], indices None when all share one key."""
        distinct = np.unique(days)
        keys = [self.day_key(None if day == NO_DAY else day) for day in distinct.tolist()]
        if len(set(keys)) == 1:
            return [(keys[0], None)]
        key_of_day = np.array(keys, dtype=np.int64)[np.searchsorted(distinct, days)]
        return [(key, np.flatnonzero(key_of_day == key)) for key in dict.fromkeys(keys)]
