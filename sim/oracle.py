"""The one door to the hidden world: for the oracle recommender and for validation only.

Recommenders never see taste vectors or listeners' interests; the oracle does, and is
therefore an upper bound to compare with, never a real treatment.
"""

from __future__ import annotations

import numpy as np

from sim.world import World


class Oracle:
    """Read access to the hidden truth of `world`."""

    def __init__(self, world: World) -> None:
        self.world = world

    def taste(self, tracks: np.ndarray | int) -> np.ndarray:
        """Hidden taste vectors of `tracks`, shape (..., taste_dim)."""
        return np.asarray(self.world.taste[tracks])

    def interests(self, user: int) -> np.ndarray:
        """The hidden interests of `user`, shape (n_interests, taste_dim)."""
        return np.asarray(self.world.listeners.interests[self.world.listeners.interests_of(user)])

    def session_interest(self, user: int, first_track: int) -> np.ndarray:
        """The interest of `user` that best explains a session starting with `first_track`."""
        interests = self.interests(user)
        return interests[int(np.argmax(interests @ self.world.taste[first_track]))]

    def best_tracks(self, interest: np.ndarray, n: int, *, day: int | None = 0) -> np.ndarray:
        """The `n` tracks of highest dot product with `interest`, best first, among the tracks
        released by `day` (None: the whole catalog, future releases included)."""
        scores = self.world.taste @ np.asarray(interest, dtype=np.float32)
        if day is not None:
            scores = np.where(self.world.catalog.release_day <= day, scores, -np.inf)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        return top[np.argsort(-scores[top], kind="stable")]

    def true_tags(self, track: int) -> np.ndarray:
        """All true tags of `track` (the catalog shows only the observed part)."""
        w = self.world
        return np.asarray(w.true_tags_indices[w.true_tags_indptr[track] : w.true_tags_indptr[track + 1]])
