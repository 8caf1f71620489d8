"""`oracle`: the unplayed track the listener's hidden taste likes best. An upper bound, never a treatment.

This is the one recommender that reads the hidden world (through `sim.oracle.Oracle`, the
simulator's only door to it), so it can only run where the world directory has its hidden half.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from contracts.catalog import Catalog
from recommenders.base import Recommendation, Recommender, Request

CACHE_SESSIONS = 4_096  # rankings kept for sessions in flight


class OracleRecommender(Recommender):
    """Best unplayed track by hidden affinity with the session's interest.

    The session's interest is the listener's hidden interest that best explains the session's
    first track (`Oracle.session_interest`); its ranking of the catalog is computed once per
    session and walked past the tracks already played. For a user id outside the world, the
    first track's own taste stands in for the interest.

    Args:
        catalog: the public catalog of a world whose hidden half is present.
        horizon: how many of the best tracks to rank per session.
    """

    name = "oracle"

    def __init__(self, catalog: Catalog, *, horizon: int = 512) -> None:
        super().__init__(catalog)
        from sim.oracle import Oracle
        from sim.world import World

        if horizon < 1:
            raise ValueError(f"horizon == {horizon}, must be >= 1")
        self.horizon = horizon
        self._oracle = Oracle(World(catalog.path))
        self._rankings: OrderedDict[tuple[int, int, int | None], list[int]] = OrderedDict()

    def _ranking(self, user: int, first: int, day: int | None) -> list[int]:
        key = (user, first, day)
        ranking = self._rankings.get(key)
        if ranking is None:
            known = 0 <= user < self._oracle.world.n_users
            # A listener the world does not know has no hidden interest: the first track stands in.
            interest = self._oracle.session_interest(user, first) if known else self._oracle.taste(first)
            ranking = self._oracle.best_tracks(interest, self.horizon, day=day).tolist()
            self._rankings[key] = ranking
            if len(self._rankings) > CACHE_SESSIONS:
                self._rankings.popitem(last=False)
        return ranking

    def _recommend(self, request: Request) -> Recommendation:
        history = request.history or (request.track,)
        played = set(history)
        for track in self._ranking(request.user, history[0], request.day):
            if track not in played:
                return Recommendation(track, 1.0)
        released = self.catalog.release_day <= (request.day if request.day is not None else np.inf)
        fresh = np.flatnonzero(released & ~np.isin(np.arange(self.catalog.n_tracks), list(played)))
        return Recommendation(int(fresh[np.argmax(self.catalog.popularity[fresh])]), 1.0)  # horizon exhausted
