"""`sticky_artist`: another released track of the artist just played, not yet played in the session."""

from __future__ import annotations

from typing import Any

import numpy as np

from contracts.catalog import Catalog
from recommenders.base import Recommendation, Recommender, Request, RequestBatch
from recommenders.builtin._params import check_choice
from recommenders.builtin._pooled import PooledRecommender
from recommenders.builtin._pools import Batch, Pool
from recommenders.builtin.random import RandomRecommender
from recommenders.builtin.top_pop import TopPopRecommender

FALLBACKS = ("random", "top_pop")


class StickyArtistRecommender(PooledRecommender):
    """Uniform over the artist's released tracks that the session has not played yet.

    The artist is the one of `Request.track`, the track just played. When the session has
    played every released track of that artist (or the track is unknown), the `fallback`
    recommender answers: `random` (default) or `top_pop` (by the catalog's prior), both built
    with the same `seed`. Propensity is 1 / (number of the artist's unplayed tracks), or the
    fallback's propensity.

    Args:
        catalog: the public catalog; tracks with `release_day` after `Request.day` are skipped.
        seed: mixed into every draw.
        fallback: "random" or "top_pop".
    """

    name = "sticky_artist"

    def __init__(self, catalog: Catalog, *, seed: int = 0, fallback: str = "random") -> None:
        self.fallback = check_choice("fallback", fallback, FALLBACKS)
        super().__init__(catalog, seed=seed)
        self._artist = catalog.artist.astype(np.int64)
        self._artist_py = self._artist.tolist()
        self._fallback_recommender: Recommender = (
            RandomRecommender(catalog, seed=seed) if fallback == "random" else TopPopRecommender(catalog, seed=seed)
        )

    def get_params(self) -> dict[str, Any]:
        return {"seed": self.seed, "fallback": self.fallback}

    def _build_pool(self, released: np.ndarray) -> Pool:
        tracks = np.flatnonzero(released)
        tracks = tracks[np.argsort(self.catalog.artist[tracks], kind="stable")]
        offsets = np.searchsorted(self.catalog.artist[tracks], np.arange(self.catalog.n_artists + 1))
        return Pool(tracks, offsets, self.catalog.n_tracks)

    def _segment(self, request: Request) -> int:
        track = request.track
        return self._artist_py[track] if 0 <= track < len(self._artist_py) else -1

    def _segments(self, batch: Batch) -> np.ndarray:
        tracks = batch.tracks
        known = (tracks >= 0) & (tracks < len(self._artist))
        return np.where(known, self._artist[np.where(known, tracks, 0)], -1)

    def _fallback(self, request: Request, pool: Pool) -> Recommendation:
        return self._fallback_recommender.recommend(request)

    def _fallback_columns(self, batch: RequestBatch, pool: Pool) -> tuple[np.ndarray, np.ndarray]:
        return self._fallback_recommender.recommend_columns(batch)
