"""`dssm`'s `user_tower: table` (the default): the first layer read from per-track rows cached on first use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts.catalog import Catalog
from recommenders import registry
from recommenders.evaluation import build_cases
from recommenders.models.ranking import Context
from recommenders.models.sessions import SessionLog
from recommenders.models.track_tables import TrackTables

USER_DIM, WIDTH, HIDDEN, TRACKS, USERS = 6, 5, 7, 30, 4


@pytest.fixture(scope="module")
def layer() -> tuple[TrackTables, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((HIDDEN, USER_DIM + 4 * WIDTH + 1)).astype(np.float32)
    bias = rng.standard_normal(HIDDEN).astype(np.float32)
    features = rng.standard_normal((TRACKS, WIDTH)).astype(np.float32)
    users = rng.standard_normal((USERS, USER_DIM)).astype(np.float32)
    return TrackTables(weight, bias, features, users), weight, bias, features, users


def test_the_tables_give_the_dense_layer_of_the_weighted_sums(layer: tuple[TrackTables, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    tables, weight, bias, features, users = layer
    rng = np.random.default_rng(1)
    user_rows = np.array([0, 3, 1])
    # Two multi-track blocks (one repeats a track, zero weights are skipped), two one-track blocks.
    blocks = [(rng.integers(0, TRACKS, (3, 4)), rng.random((3, 4)).astype(np.float32)) for _ in range(2)]
    blocks[0][0][0, :2] = 7
    blocks[1][1][2, 1:] = 0.0
    blocks += [(rng.integers(0, TRACKS, (3, 1)), rng.random((3, 1)).astype(np.float32)) for _ in range(2)]
    value = rng.random(3).astype(np.float32)

    got = tables(user_rows, blocks, value)

    sums = [(weights[..., None].astype(np.float64) * features[tracks]).sum(1) for tracks, weights in blocks]
    dense = np.concatenate([users[user_rows], *sums, value[:, None]], axis=1) @ weight.T.astype(np.float64) + bias
    assert got.dtype == np.float32 and got.shape == (3, HIDDEN)
    np.testing.assert_allclose(got, dense, rtol=1e-5, atol=1e-5)


def dense_layer(weight: np.ndarray, bias: np.ndarray, features: np.ndarray, users: np.ndarray, user_rows: np.ndarray, blocks: list[tuple[np.ndarray, np.ndarray]], value: np.ndarray) -> np.ndarray:
    sums = [(weights[..., None].astype(np.float64) * features[tracks]).sum(1) for tracks, weights in blocks]
    return np.concatenate([users[user_rows], *sums, value[:, None]], axis=1) @ weight.T.astype(np.float64) + bias


def random_batch(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    blocks = [(rng.integers(0, TRACKS, (batch, 4)), rng.random((batch, 4)).astype(np.float32)) for _ in range(2)]
    blocks += [(rng.integers(0, TRACKS, (batch, 1)), rng.random((batch, 1)).astype(np.float32)) for _ in range(2)]
    return rng.integers(0, USERS, batch), blocks, rng.random(batch).astype(np.float32)


def test_a_bounded_cache_evicts_and_gives_the_rows_of_the_full_one(layer: tuple[TrackTables, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, weight, bias, features, users = layer
    row_bytes = HIDDEN * 4
    full = TrackTables(weight, bias, features, users)
    small = TrackTables(weight, bias, features, users, max_bytes=12 * row_bytes)  # 12 of the 124 rows
    rng = np.random.default_rng(2)

    for batch in (1, 2, 3, 1, 2, 1, 50):  # small batches fill and evict; 50 requests need more rows than the cache holds
        users_rows, blocks, value = random_batch(rng, batch)
        got = small(users_rows, blocks, value)
        np.testing.assert_array_equal(got, full(users_rows, blocks, value))
        np.testing.assert_allclose(got, dense_layer(weight, bias, features, users, users_rows, blocks, value), rtol=1e-5, atol=1e-5)
        assert small.nbytes <= 12 * row_bytes

    assert small.capacity == 12 and small.nbytes == 12 * row_bytes
    cached = small._key[small._key >= 0]
    assert len(np.unique(cached)) == 12 and np.array_equal(small._slot[cached], np.flatnonzero(small._key >= 0))


def test_a_row_keeps_its_bits_whatever_batch_filled_it(layer: tuple[TrackTables, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, weight, bias, features, users = layer
    alone, crowded = TrackTables(weight, bias, features, users), TrackTables(weight, bias, features, users)
    users_rows, blocks, value = random_batch(np.random.default_rng(3), 1)
    others = random_batch(np.random.default_rng(4), 40)
    crowded(*others)  # the same rows computed among many others first

    np.testing.assert_array_equal(alone(users_rows, blocks, value), crowded(users_rows, blocks, value))


def test_a_weight_of_another_layout_is_refused(layer: tuple[TrackTables, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, weight, bias, features, users = layer
    with pytest.raises(ValueError, match=r"weight has 26 inputs, the layout needs 6 \+ 4 x 5 \+ 1"):
        TrackTables(weight[:, :-1], bias, features, users)


@pytest.mark.parametrize("table_mb", [256, 1])
def test_dssm_table_serves_the_float32_answers(artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog, table_mb: int) -> None:
    float32 = registry.make("dssm", small_catalog, {"user_tower": "float32"}, artifacts["dssm"])
    table = registry.make("dssm", small_catalog, {} if table_mb == 256 else {"table_mb": table_mb}, artifacts["dssm"])
    requests = build_cases(*split_log, small_catalog.n_tracks, 0.5).requests[:300]
    context = Context.from_requests(requests, float32.history_length, small_catalog.n_tracks)

    embeddings = table.user_embeddings(context)

    # LayerNorm outputs (unit scale): float32 rounding of the reordered sums moves them by about 1e-6, a wrong
    # block, weight or normalisation by tenths.
    np.testing.assert_allclose(embeddings, float32.user_embeddings(context), atol=1e-4)
    answers = [answer.track for answer in table.recommend_batch(requests)]
    assert answers == [answer.track for answer in float32.recommend_batch(requests)]
    assert all(track not in request.history for track, request in zip(answers, requests, strict=True))
    assert table.get_params()["user_tower"] == "table" and float32.get_params()["user_tower"] == "float32"
    assert table.get_params()["table_mb"] == table_mb
