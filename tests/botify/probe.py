"""Recommenders for tests: they show what the service handed them, or fail on purpose."""

from __future__ import annotations

import numpy as np

from recommenders.base import Recommendation, Recommender, Request
from recommenders.models.ranking import CatalogScorer, Context


class HistoryProbe(Recommender):
    """Answers the length of the session's history, so a test reads the history over HTTP.

    It also checks that the history ends with the request's own track and time.
    """

    name = "history_probe"

    def _recommend(self, request: Request) -> Recommendation:
        if not request.history or request.history[-1] != request.track or request.times[-1] != request.time:
            raise AssertionError(f"history {request.history} / {request.times} does not end with {request.track}, {request.time}")
        if len(request.history) != len(request.times):
            raise AssertionError("history and times differ in length")
        return Recommendation(len(request.history) % self.catalog.n_tracks, 1.0)


class Broken(Recommender):
    """Always raises: without a fallback the service answers 500 and logs an error event."""

    name = "broken"

    def _recommend(self, request: Request) -> Recommendation:
        raise RuntimeError("broken on purpose")


class OutOfCatalog(Recommender):
    """Answers a track that does not exist: the service must refuse to pass it on."""

    name = "out_of_catalog"

    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(self.catalog.n_tracks + 5)


def probe_scores(user: int, n_tracks: int) -> np.ndarray:
    """`ScoreProbe`'s scores of every track for `user`: distinct, and a different order per user."""
    tracks = np.arange(n_tracks, dtype=np.float64)
    return np.cos(0.37 * tracks * (1 + user % 7) + user).astype(np.float32)


class ScoreProbe(CatalogScorer, Recommender):
    """A scoring recommender that needs no training: scores are `probe_scores`, so a test can
    recompute what softmax exploration over them must draw."""

    name = "score_probe"

    def _score_all(self, context: Context) -> np.ndarray:
        return np.stack([probe_scores(int(user), self.catalog.n_tracks) for user in context.users])

    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(int(self.rank([request], 1)[0, 0]), 1.0)
