"""Seeded picks: exactly uniform over the candidates, and the single and batched forms agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommenders.base import Request
from recommenders.builtin._pools import (
    MASK64,
    Pool,
    batch_arrays,
    mix64,
    mix64_array,
    pick_many,
    pick_one,
    request_key,
)


def _pool(segments: list[list[int]], n_tracks: int) -> Pool:
    order = np.array([t for segment in segments for t in segment], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in segments])])
    return Pool(order, offsets, n_tracks)


def test_keys_walk_the_candidates_in_order() -> None:
    pool = _pool([list(range(10))], 10)
    picks = [pick_one(pool, 0, key, skip=[2, 5, 5]) for key in range(8)]
    assert picks == [(t, 8) for t in (0, 1, 3, 4, 6, 7, 8, 9)]
    assert pick_one(pool, 0, 8, skip=[2, 5]) == (0, 8)  # key mod 8


def test_cap_limits_to_the_first_candidates() -> None:
    pool = _pool([[9, 4, 7, 1]], 10)  # a ranking: 9 best
    assert {pick_one(pool, 0, key, skip=[9], cap=2)[0] for key in range(10)} == {4, 7}
    assert pick_one(pool, 0, 0, skip=[9], cap=2)[1] == 2


def test_exhausted_segment_gives_nothing() -> None:
    pool = _pool([[0, 1], [2, 3, 4]], 5)
    assert pick_one(pool, 0, 123, skip=[0, 1, 7, -1]) == (-1, 0)  # unknown ids are ignored
    tracks, candidates = pick_many(pool, np.array([0, 1, -1]), np.array([5, 5, 5], dtype=np.uint64), np.array([0, 1, 3]), np.array([0, 0, 1]))
    assert tracks.tolist() == [-1, 4, -1] and candidates.tolist() == [0, 2, 0]


def test_mix64_matches_its_array_form() -> None:
    values = [0, 1, 2**63 - 1, 2**63, MASK64, 123456789]
    assert mix64_array(np.array(values, dtype=np.uint64)).tolist() == [mix64(v) for v in values]


def test_batch_keys_match_single_keys_for_odd_ids() -> None:
    requests = [
        Request(user=-5, track=3, time=1.0, history=(3,), seed=-1),
        Request(user=2**63 + 7, track=4, time=0.5, history=(1, 4), seed=2**64 - 1),
        Request(user=0, track=0, time=0.0, seed=42),
        Request(user=3, track=1, time=0.3, seed=2**64 - 5),
    ]
    assert batch_arrays(requests, salt=99).keys.tolist() == [request_key(99, r) for r in requests]
    unsigned_seeds = requests[1:]  # seeds as the service sends them: unsigned 64-bit hashes
    assert batch_arrays(unsigned_seeds, salt=7).keys.tolist() == [request_key(7, r) for r in unsigned_seeds]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 12), min_size=1, max_size=4),
    requests=st.lists(
        st.tuples(st.integers(-1, 3), st.integers(0, 2**64 - 1), st.lists(st.integers(-2, 50), max_size=15), st.one_of(st.none(), st.integers(1, 5))),
        min_size=1,
        max_size=30,
    ),
)
def test_pick_many_agrees_with_pick_one(sizes: list[int], requests: list[tuple[int, int, list[int], int | None]]) -> None:
    rng = np.random.default_rng(len(sizes))
    tracks = rng.permutation(48)[: sum(sizes)].tolist()
    segments, start = [], 0
    for size in sizes:
        segments.append(tracks[start : start + size])
        start += size
    pool = _pool(segments, 48)
    for cap in {r[3] for r in requests}:
        segs = np.array([s if s < len(sizes) else -1 for s, *_ in requests], dtype=np.int64)
        keys = np.array([k for _, k, *_ in requests], dtype=np.uint64)
        skip = np.array([t for _, _, skips, _ in requests for t in skips], dtype=np.int64)
        owner = np.repeat(np.arange(len(requests)), [len(skips) for _, _, skips, _ in requests])
        got_tracks, got_candidates = pick_many(pool, segs, keys, skip, owner, cap)
        for i, (_, key, skips, _) in enumerate(requests):
            expected = pick_one(pool, int(segs[i]), key, skips, cap) if segs[i] >= 0 else (-1, 0)
            assert (got_tracks[i], got_candidates[i]) == expected
            if expected[0] >= 0:
                assert expected[0] not in skips


@pytest.mark.parametrize("skip", [[], [0], [0, 1, 2, 3, 4, 5, 6, 7, 8]])
def test_every_candidate_is_reachable(skip: list[int]) -> None:
    pool = _pool([list(range(10))], 10)
    reached = {pick_one(pool, 0, key, skip)[0] for key in range(10 - len(skip))}
    assert reached == set(range(10)) - set(skip)
