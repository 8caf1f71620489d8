"""The int8 layer of `dssm`'s opt-in `user_tower: int8` serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts.catalog import Catalog
from recommenders import registry
from recommenders.evaluation import build_cases
from recommenders.models.int8 import QMAX, Int8Linear
from recommenders.models.ranking import Context
from recommenders.models.sessions import SessionLog


@pytest.fixture(scope="module")
def layer() -> tuple[Int8Linear, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((40, 300)).astype(np.float32) * np.linspace(0.01, 1.0, 40, dtype=np.float32)[:, None]
    bias = rng.standard_normal(40).astype(np.float32)
    return Int8Linear(weight, bias), weight, bias


def test_the_int8_product_stays_within_the_rounding_bound(layer: tuple[Int8Linear, np.ndarray, np.ndarray]) -> None:
    int8, weight, bias = layer
    x = np.random.default_rng(1).standard_normal((64, 300)).astype(np.float32) * np.logspace(-2, 1, 64, dtype=np.float32)[:, None]

    got = int8(x)

    # Rounding moves each x by at most s_x / 2 and each w by at most s_w / 2, so each product term by at most
    # |x| s_w / 2 + |w| s_x / 2 + s_x s_w / 4 (plus float32 rounding of the exact reference, far below).
    s_x = np.abs(x).max(axis=1, keepdims=True) / QMAX
    s_w = np.abs(weight).max(axis=1) / QMAX
    bound = (np.abs(x) @ np.full((300, 40), 1.0) * s_w / 2 + s_x / 2 * np.abs(weight).sum(axis=1) + 300 * s_x * s_w / 4) * 1.001 + 1e-5
    error = np.abs(got - (x.astype(np.float64) @ weight.T.astype(np.float64) + bias))
    assert got.dtype == np.float32 and got.shape == (64, 40)
    assert (error <= bound).all()
    assert error.max() > 0  # it is quantised, not a float product


def test_a_request_is_scaled_on_its_own_not_by_its_batch(layer: tuple[Int8Linear, np.ndarray, np.ndarray]) -> None:
    int8, _, _ = layer
    x = np.random.default_rng(2).standard_normal((8, 300)).astype(np.float32)
    x[3] *= 1000.0  # one loud request: a scale shared by the batch would crush the others to a few levels

    together = int8(x)

    assert all(np.array_equal(together[row], int8(x[row : row + 1])[0]) for row in range(8))


def test_bad_input_shape_is_named(layer: tuple[Int8Linear, np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ValueError, match=r"input must have shape \(B, 300\), got \(2, 299\)"):
        layer[0](np.zeros((2, 299), np.float32))


def test_dssm_int8_serves_by_the_rules_and_near_float32(artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog) -> None:
    float32 = registry.make("dssm", small_catalog, {"user_tower": "float32"}, artifacts["dssm"])
    int8 = registry.make("dssm", small_catalog, {"user_tower": "int8"}, artifacts["dssm"])
    requests = build_cases(*split_log, small_catalog.n_tracks, 0.5).requests[:300]
    context = Context.from_requests(requests, float32.history_length, small_catalog.n_tracks)

    answers = [answer.track for answer in int8.recommend_batch(requests)]

    assert registry.get_class("dssm")(small_catalog).get_params()["user_tower"] == "table"  # int8 is never the default
    assert all(track not in request.history for track, request in zip(answers, requests, strict=True))
    # The user embeddings are LayerNorm outputs (unit scale): quantisation moves them by a few hundredths.
    difference = np.abs(int8.user_embeddings(context) - float32.user_embeddings(context))
    assert 0 < difference.max() < 0.1


def test_an_unknown_user_tower_is_named(small_catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="user_tower"):
        registry.get_class("dssm")(small_catalog, user_tower="int4")
