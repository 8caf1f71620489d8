"""`dssm`'s opt-in `user_tower: table`: the first layer read from per-track tables."""

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


def test_a_weight_of_another_layout_is_refused(layer: tuple[TrackTables, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, weight, bias, features, users = layer
    with pytest.raises(ValueError, match=r"weight has 26 inputs, the layout needs 6 \+ 4 x 5 \+ 1"):
        TrackTables(weight[:, :-1], bias, features, users)


def test_dssm_table_serves_the_float32_answers(artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog) -> None:
    float32 = registry.make("dssm", small_catalog, {}, artifacts["dssm"])
    table = registry.make("dssm", small_catalog, {"user_tower": "table"}, artifacts["dssm"])
    requests = build_cases(*split_log, small_catalog.n_tracks, 0.5).requests[:300]
    context = Context.from_requests(requests, float32.history_length, small_catalog.n_tracks)

    embeddings = table.user_embeddings(context)

    # LayerNorm outputs (unit scale): float32 rounding of the reordered sums moves them by about 1e-6, a wrong
    # block, weight or normalisation by tenths.
    np.testing.assert_allclose(embeddings, float32.user_embeddings(context), atol=1e-4)
    answers = [answer.track for answer in table.recommend_batch(requests)]
    assert all(track not in request.history for track, request in zip(answers, requests, strict=True))
    assert table.get_params()["user_tower"] == "table" and float32.get_params()["user_tower"] == "float32"
