"""`recent_artist_mix`: another track by one of the artists the listener liked lately in this session."""

from __future__ import annotations

from typing import Any

import numpy as np

from contracts.catalog import Catalog
from recommenders.base import Recommendation, Recommender, Request

MASK64 = (1 << 64) - 1


class RecentArtistMixRecommender(Recommender):
    """Uniform over the unplayed, released tracks of the artists liked lately in the session.

    The artists are those of the last `window` distinct artists whose tracks the listener
    played at least `like_threshold` of (the course's client sends `time` 1.0 with a session's
    first track, so the first artist always counts). Where `sticky_artist` follows only the
    track just played, this keeps the session's recent taste after a skip, and mixes a few
    artists instead of exhausting one. When those artists have nothing left, it answers the
    most popular unplayed released track. Propensity: 1 / (number of candidates), or 1.0 for
    the popular fallback.

    Args:
        catalog: the public catalog.
        window: how many recently liked artists to mix.
        like_threshold: the fraction listened that counts as liked.
        seed: mixed into every draw.
    """

    name = "recent_artist_mix"

    def __init__(self, catalog: Catalog, *, window: int = 3, like_threshold: float = 0.5, seed: int = 0) -> None:
        super().__init__(catalog)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window == {window!r}, must be an integer >= 1")
        if isinstance(like_threshold, bool) or not isinstance(like_threshold, int | float) or not 0.0 <= like_threshold <= 1.0:
            raise ValueError(f"like_threshold == {like_threshold!r}, must be a number in [0, 1]")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed == {seed!r}, must be an integer")
        self.window = window
        self.like_threshold = float(like_threshold)
        self.seed = seed
        self._by_popularity: list[int] = np.argsort(-catalog.popularity, kind="stable").tolist()
        self._first_day = int(catalog.release_day.min())

    def get_params(self) -> dict[str, Any]:
        return {"window": self.window, "like_threshold": self.like_threshold, "seed": self.seed}

    def recent_artists(self, request: Request) -> list[int]:
        """The artists of the session's liked tracks, most recent first, at most `window`."""
        history = request.history or (request.track,)
        times = request.times if len(request.times) == len(history) else (0.0,) * (len(history) - 1) + (request.time,)
        artists: list[int] = []
        for track, listened in zip(reversed(history), reversed(times), strict=True):
            artist = int(self.catalog.artist[track])
            if listened >= self.like_threshold and artist not in artists:
                artists.append(artist)
                if len(artists) == self.window:
                    break
        return artists

    def _recommend(self, request: Request) -> Recommendation:
        played = {*request.history, request.track}
        day = None if request.day is None else max(request.day, self._first_day)
        release_day = self.catalog.release_day

        def allowed(track: int) -> bool:
            return track not in played and (day is None or release_day[track] <= day)

        candidates = [
            track
            for artist in self.recent_artists(request)
            for track in self.catalog.tracks_of_artist(artist).tolist()
            if allowed(track)
        ]
        if candidates:
            # One generator per request, seeded by everything that defines the request: deterministic.
            rng = np.random.default_rng([self.seed & MASK64, request.seed & MASK64, request.user & MASK64, request.track, len(request.history)])
            return Recommendation(candidates[int(rng.integers(len(candidates)))], 1.0 / len(candidates))
        for track in self._by_popularity:
            if allowed(track):
                return Recommendation(track, 1.0)
        return Recommendation(self._by_popularity[0], 1.0)  # everything was played
