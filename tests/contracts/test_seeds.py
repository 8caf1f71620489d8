"""Request seeds: the batch form gives `request_seed`'s seeds exactly, whatever the keys' lengths."""

from __future__ import annotations

import mmh3
import numpy as np
import pytest

from contracts.murmur import hash64_rows
from contracts.seeds import SEED_MASK, request_seed, request_seeds


def _number(rng: np.random.Generator, digits: int) -> int:
    """A random non-negative int64 of exactly `digits` decimal digits."""
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return int(rng.integers(low, min(10**digits, 2**63 - 1), endpoint=digits == 19))


@pytest.mark.parametrize("length", range(0, 50))
def test_rows_hash_as_mmh3_hashes_each_row(length: int) -> None:
    rows = np.random.default_rng(length).integers(0, 256, size=(20, length), dtype=np.uint8)

    for seed in (0, 1, 2**32 - 1):
        assert hash64_rows(rows, seed=seed).tolist() == [mmh3.hash64(bytes(row), seed=seed, signed=False)[0] for row in rows]


def test_rows_read_in_place_ignore_nothing_but_their_zero_padding() -> None:
    rows = np.zeros((3, 32), dtype=np.uint8)
    rows[:, :21] = np.frombuffer(b"0:4294967296:17672256" * 3, dtype=np.uint8).reshape(3, 21)

    assert hash64_rows(rows, 21).tolist() == [mmh3.hash64(b"0:4294967296:17672256", signed=False)[0]] * 3


@pytest.mark.parametrize("service_seed", [0, 7, -3, 2**40 + 1])
def test_batch_seeds_are_the_single_seeds_for_every_key_length(service_seed: int) -> None:
    """Sessions and timestamps of 1 to 19 digits, mixed in one batch (each length its own matrix)."""
    rng = np.random.default_rng(5)
    sessions = [_number(rng, d) for d in rng.integers(1, 20, size=300).tolist()]
    ts = [_number(rng, d) for d in rng.integers(1, 20, size=300).tolist()]
    sessions[:3], ts[:3] = [0, 2**63 - 1, 9], [2**63 - 1, 0, 10]

    seeds = request_seeds(service_seed, sessions, ts)

    assert seeds.dtype == np.uint64
    assert seeds.tolist() == [request_seed(service_seed, s, t) for s, t in zip(sessions, ts, strict=True)]
    assert all(seed <= SEED_MASK for seed in seeds.tolist())


@pytest.mark.parametrize(
    ("sessions", "ts"),
    [([None, 3], [1, 2]), ([-5, 3], [1, 2]), ([2**64, 3], [1, 2]), ([1, 3], [-1, 2]), ([np.int64(4), 3], [1, 2]), ([], [])],
    ids=["no session", "negative session", "beyond int64", "negative ts", "numpy int", "empty"],
)
def test_keys_the_matrices_do_not_take_are_hashed_one_by_one(sessions: list[int | None], ts: list[int | None]) -> None:
    assert request_seeds(0, sessions, ts).tolist() == [request_seed(0, s, t) for s, t in zip(sessions, ts, strict=True)]
