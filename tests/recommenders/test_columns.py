"""Requests as columns: a `RequestBatch` holds the same requests, and the columnar answers and
verdicts are those of `recommend_batch` and `ask_all`."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.catalog import Catalog
from recommenders.answers import Outcome, Outcomes, ask_all, ask_columns
from recommenders.base import Recommender, Request, RequestBatch
from recommenders.builtin.random import RandomRecommender
from recommenders.builtin.sticky_artist import StickyArtistRecommender
from recommenders.builtin.top_pop import TopPopRecommender


def _requests(n_tracks: int, n: int, seed: int = 0) -> list[Request]:
    """Sessions of 1 to 12 tracks (some long enough to exhaust an artist), on days None, 0, 1, 2."""
    rng = np.random.default_rng(seed)
    requests = []
    for i in range(n):
        history = tuple(int(t) for t in rng.integers(0, n_tracks, size=int(rng.integers(1, 13))))
        times = tuple(float(t) for t in rng.random(len(history)))
        day = [None, 0, 1, 2][i % 4]
        requests.append(Request(int(rng.integers(0, 10**6)), history[-1], times[-1], history, times, int(rng.integers(0, 2**63)), day))
    return requests


def test_a_batch_holds_the_same_requests(release_catalog: Catalog) -> None:
    requests = _requests(release_catalog.n_tracks, 50)
    batch = RequestBatch.of(requests)
    assert batch.requests() == requests
    chosen = np.array([7, 0, 31, 31, 49], dtype=np.int64)
    assert batch.take(chosen).requests() == [requests[i] for i in chosen.tolist()]
    assert batch.requests([3, 1]) == [requests[3], requests[1]]


@pytest.mark.parametrize("cls", [RandomRecommender, StickyArtistRecommender, TopPopRecommender])
def test_columnar_answers_are_recommend_s(release_catalog: Catalog, cls: type[Recommender]) -> None:
    recommender = cls(release_catalog, seed=3)  # type: ignore[call-arg]
    requests = _requests(release_catalog.n_tracks, 400, seed=1)
    tracks, propensity = recommender.recommend_columns(RequestBatch.of(requests))
    singles = [recommender.recommend(r) for r in requests]
    assert tracks.tolist() == [a.track for a in singles]
    assert propensity.tolist() == [a.propensity for a in singles]


def test_sticky_artist_falls_back_in_columns_too(tiny_catalog: Catalog) -> None:
    """Every track of the catalog played: each answer is the fallback's, as one by one."""
    recommender = StickyArtistRecommender(tiny_catalog, seed=1)
    history = tuple(range(tiny_catalog.n_tracks))
    requests = [Request(user, history[-1], 0.5, history, (0.5,) * len(history), seed=user) for user in range(20)]
    tracks, _ = recommender.recommend_columns(RequestBatch.of(requests))
    assert tracks.tolist() == [recommender.recommend(r).track for r in requests]


class _Broken(RandomRecommender):
    """Columnar, but answers a track outside the catalog for every third request."""

    name = "broken"

    def _recommend_columns(self, batch: RequestBatch) -> tuple[np.ndarray, np.ndarray]:
        tracks, propensity = super()._recommend_columns(batch)
        tracks[::3] = self.catalog.n_tracks
        return tracks, propensity

    def _recommend_batch(self, requests: list[Request]) -> list:  # type: ignore[override]
        from recommenders.builtin._pools import make_recommendations

        return make_recommendations(*self._recommend_columns(RequestBatch.of(requests)))


def _same(columns: Outcomes, outcomes: list) -> None:
    """Equal outcomes, but for the time spent (each call's own) and the rules' identity (equal messages)."""

    def plain(outcome: Outcome) -> tuple:
        return outcome._replace(seconds=0.0, error=None if outcome.error is None else str(outcome.error))

    assert [plain(columns.at(i)) for i in range(len(outcomes))] == [plain(o) for o in outcomes]


@pytest.mark.parametrize("cls", [RandomRecommender, _Broken])
def test_ask_columns_gives_ask_all_s_verdicts(tiny_catalog: Catalog, cls: type[Recommender]) -> None:
    recommender = cls(tiny_catalog, seed=2)  # type: ignore[call-arg]
    requests = _requests(tiny_catalog.n_tracks, 30, seed=2)
    columns = ask_columns(recommender, "r", tiny_catalog.n_tracks, RequestBatch.of(requests))
    outcomes = ask_all(recommender, "r", tiny_catalog.n_tracks, requests)
    _same(columns, outcomes)
    assert (columns.errors is None) == (cls is RandomRecommender)


def test_ask_columns_marks_a_batch_over_its_budget_slow(tiny_catalog: Catalog) -> None:
    requests = _requests(tiny_catalog.n_tracks, 10, seed=4)
    columns = ask_columns(RandomRecommender(tiny_catalog), "r", tiny_catalog.n_tracks, RequestBatch.of(requests), budget=0.0)
    assert columns.errors is not None and {e.kind for e in columns.errors if e is not None} == {"slow"}
    assert columns.tracks.tolist() == [RandomRecommender(tiny_catalog).recommend(r).track for r in requests]  # slow answers are kept
