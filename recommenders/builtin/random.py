"""`random`: a uniformly random released track that the session has not played yet."""

from __future__ import annotations

import numpy as np

from recommenders.base import Recommendation, Request, RequestBatch
from recommenders.builtin._pooled import PooledRecommender
from recommenders.builtin._pools import Pool


class RandomRecommender(PooledRecommender):
    """Uniform over the released tracks not yet played in the session.

    The cold-start baseline and the usual control. The answer is a pure function of the request
    (user, track, history, `seed`, `day`) and the `seed` parameter, so a fixed `Request.seed`
    gives a fixed answer. Propensity is 1 / (number of candidates). Only when every released
    track has been played does it repeat one (uniform over all released tracks).

    Args:
        catalog: the public catalog; tracks with `release_day` after `Request.day` are skipped.
        seed: mixed into every draw (two treatments with different seeds draw apart).

    Example:
        >>> recommender = RandomRecommender(catalog, seed=1)  # doctest: +SKIP
        >>> recommender.recommend(Request(user=7, track=3, time=1.0, history=(3,), seed=42))  # doctest: +SKIP
        Recommendation(track=18342, propensity=2.0000400008000162e-05)
    """

    name = "random"

    def _build_pool(self, released: np.ndarray) -> Pool:
        order = np.flatnonzero(released)
        return Pool(order, np.array([0, len(order)]), self.catalog.n_tracks)

    def _fallback(self, request: Request, pool: Pool) -> Recommendation:
        return self._pick_with_repeats(request, pool)

    def _fallback_columns(self, batch: RequestBatch, pool: Pool) -> tuple[np.ndarray, np.ndarray]:
        return self._pick_with_repeats_columns(batch, pool)
