"""Reference rankers for the offline comparison: random, top_pop and sticky_artist.

They follow the built-in recommenders of the same names, restated as scorers of the whole
catalog so that offline evaluation can rank with them; they learn only from the training
period of the log.
"""

from __future__ import annotations

import numpy as np

from recommenders.catalog import Catalog
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


def like_counts(log: SessionLog, n_tracks: int, like_threshold: float) -> np.ndarray:
    """(n_tracks,) float64: likes per track in `log`."""
    return np.bincount(log.track[log.liked(like_threshold)], minlength=n_tracks).astype(np.float64)


class TopPopRanker(CatalogScorer):
    """The most liked tracks of the training period (ties broken by the catalog's popularity prior)."""

    name = "top_pop"

    def __init__(self, catalog: Catalog, log: SessionLog, like_threshold: float) -> None:
        self.catalog = catalog
        prior = catalog.popularity / max(catalog.popularity.max(), 1e-300)
        self._scores = (like_counts(log, catalog.n_tracks, like_threshold) + 0.5 * prior).astype(np.float32)

    def _score_all(self, context: Context) -> np.ndarray:
        return np.tile(self._scores, (len(context.users), 1))


class StickyArtistRanker(CatalogScorer):
    """Tracks of the artist just played first, then everything else; each group by popularity."""

    name = "sticky_artist"

    def __init__(self, catalog: Catalog, log: SessionLog, like_threshold: float) -> None:
        self.catalog = catalog
        popularity = TopPopRanker(catalog, log, like_threshold)._scores.astype(np.float64)
        self._popularity = (0.5 * popularity / max(popularity.max(), 1e-300)).astype(np.float32)

    def _score_all(self, context: Context) -> np.ndarray:
        scores = np.tile(self._popularity, (len(context.users), 1))
        last = context.recent[:, 0]
        for row in np.flatnonzero(last >= 0):
            scores[row, self.catalog.tracks_of_artist(int(self.catalog.artist[last[row]]))] += 1.0
        return scores
