"""The built-in baselines as rankers, for the offline comparison: random, top_pop, sticky_artist.

Offline evaluation needs scores for candidate tracks and a top-k list, which the built-ins'
single answers do not give; these rankers score the whole catalog the way the built-ins choose:

- `random`: uniform scores (the built-in draws uniformly among unplayed tracks);
- `top_pop`: the built-in `TopPopRecommender` fitted on the training period, scored by its
  ranking (total fraction listened per track, then the catalog's popularity prior);
- `sticky_artist`: the artist of the track just played first, in random order (the built-in
  draws uniformly among them), then everything else at random (its `random` fallback).
"""

from __future__ import annotations

import numpy as np

from contracts.catalog import Catalog
from recommenders.builtin.top_pop import TopPopRecommender
from recommenders.models.ranking import CatalogScorer, Context
from recommenders.models.sessions import SessionLog


class RandomRanker(CatalogScorer):
    """Uniformly random scores: the floor any model must clear."""

    name = "random"

    def __init__(self, catalog: Catalog, seed: int = 0) -> None:
        self.catalog = catalog
        self._rng = np.random.default_rng(seed)

    def _score_all(self, context: Context) -> np.ndarray:
        return self._rng.random((len(context.users), self.catalog.n_tracks), dtype=np.float32)


class TopPopRanker(CatalogScorer):
    """`top_pop` fitted on the training sessions: the same score for every request."""

    name = "top_pop"

    def __init__(self, catalog: Catalog, train: SessionLog) -> None:
        self.catalog = catalog
        recommender = TopPopRecommender(catalog)
        if len(train):
            recommender.fit(train.to_frame())
        ranking = recommender.ranking()
        scores = np.empty(catalog.n_tracks, dtype=np.float32)
        scores[ranking] = np.arange(catalog.n_tracks, 0, -1, dtype=np.float32)
        self._scores = scores

    def _score_all(self, context: Context) -> np.ndarray:
        return np.tile(self._scores, (len(context.users), 1))


class StickyArtistRanker(CatalogScorer):
    """`sticky_artist`: tracks of the artist just played score above all others; random within each group."""

    name = "sticky_artist"

    def __init__(self, catalog: Catalog, seed: int = 0) -> None:
        self.catalog = catalog
        self._rng = np.random.default_rng(seed)

    def _score_all(self, context: Context) -> np.ndarray:
        scores = self._rng.random((len(context.users), self.catalog.n_tracks), dtype=np.float32)
        last = context.recent[:, 0]
        for row in np.flatnonzero(last >= 0):
            scores[row, self.catalog.tracks_of_artist(int(self.catalog.artist[last[row]]))] += 1.0
        return scores
