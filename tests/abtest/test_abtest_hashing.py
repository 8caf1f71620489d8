"""The vectorised MurmurHash3 against the mmh3 package, which the service's assignment uses."""

from __future__ import annotations

import mmh3
import numpy as np
import pytest

from abtest.errors import AbtestError
from abtest.hashing import aa_salts, iter_resalted_buckets, murmur3_32, resalted_buckets


@pytest.mark.parametrize("experiment", ["exp", "a", "dssm_vs_sticky", "naïve-ünïcode", ""])
def test_resalted_buckets_equal_mmh3(experiment: str) -> None:
    rng = np.random.default_rng(1)
    users = np.concatenate([rng.integers(0, 10**k, 30) for k in range(1, 14)] + [np.array([0, -7, -123456])])
    salts = aa_salts(experiment, runs=25, seed=4)

    buckets = resalted_buckets(salts, users, 3)

    expected = [[mmh3.hash(f"{salt}:{user}", signed=False) % 3 for user in users] for salt in salts]
    assert (buckets == np.array(expected)).all()


def test_murmur3_of_arbitrary_bytes_equals_mmh3() -> None:
    keys = [bytes(range(i % 7, i % 7 + i % 13)) for i in range(300)] + [b"", b"exp:42"]

    assert (murmur3_32(keys) == np.array([mmh3.hash(k, signed=False) for k in keys], dtype=np.uint32)).all()


def test_salts_are_distinct_and_block_aligned() -> None:
    salts = aa_salts("exp", runs=1000, seed=0)

    assert len(set(salts)) == 1000
    assert all(len((s + ":").encode()) % 4 == 0 for s in salts)
    assert aa_salts("exp", runs=3, seed=1) != aa_salts("exp", runs=3, seed=0)


def test_unaligned_salt_is_refused() -> None:
    with pytest.raises(AbtestError, match="multiple of 4"):
        next(iter_resalted_buckets(["ab"], np.array([1, 2]), 2))


def test_resalted_splits_are_balanced_and_independent() -> None:
    users = np.arange(20_000)
    splits = resalted_buckets(aa_salts("exp", runs=50), users, 2).astype(float)

    shares = splits.mean(axis=1)
    correlation = np.corrcoef(splits)[np.triu_indices(50, k=1)]
    # binomial sd of a share is 0.0035; of a correlation between independent splits about 0.007
    assert np.abs(shares - 0.5).max() < 0.02
    assert np.abs(correlation).max() < 0.04
