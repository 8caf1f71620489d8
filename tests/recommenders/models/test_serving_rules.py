"""The serving rules of every catalog-scoring model, on a hand-written catalog: answers written out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.catalog import Catalog
from recommenders.base import Request
from recommenders.models.ranking import CatalogScorer, Context
from recommenders.testing import write_catalog

ARTISTS = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]
RELEASES = [0, 0, 0, 0, 0, 0, 1, 1, 2, 3]


class Flat(CatalogScorer):
    """Scores track i as i / 10, so every change the rules make is visible."""

    def __init__(self, catalog: Catalog, artist_penalty: float) -> None:
        self.catalog, self.history_length, self.artist_penalty = catalog, 5, artist_penalty

    def _score_all(self, context: Context) -> np.ndarray:
        return np.tile(np.arange(self.catalog.n_tracks, dtype=np.float32) / 10, (len(context.users), 1))


def test_rules_mask_unreleased_and_played_tracks_and_penalise_played_artists(tmp_path: Path) -> None:
    catalog = Catalog(write_catalog(tmp_path / "world", artist=ARTISTS, release_day=RELEASES))
    requests = [
        Request(1, 1, 0.5, (0, 1), (1.0, 0.5), 0, 1),  # artist 0 twice, on day 1
        Request(2, 6, 0.5, (6,), (1.0,), 0, None),  # artist 3 once, no day: everything is out
        Request(3, 3, 0.5, (3,), (1.0,), 0, 0),  # artist 1 once, on day 0
    ]

    scores = Flat(catalog, artist_penalty=0.25)._serving_scores(Context.from_requests(requests, 5, catalog.n_tracks))

    inf = -np.inf
    expected = np.array(
        [
            [inf, inf, 0.2 - 0.5, 0.3, 0.4, 0.5, 0.6, 0.7, inf, inf],  # 8, 9 come out on days 2, 3
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, inf, 0.7 - 0.25, 0.8 - 0.25, 0.9 - 0.25],
            [0.0, 0.1, 0.2, inf, 0.4 - 0.25, 0.5, inf, inf, inf, inf],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(scores, expected)


def test_released_after_lists_the_tracks_not_yet_out(tmp_path: Path) -> None:
    catalog = Catalog(write_catalog(tmp_path / "world", artist=ARTISTS, release_day=RELEASES))

    assert catalog.released_after(0).tolist() == [6, 7, 8, 9]
    assert catalog.released_after(2).tolist() == [9]
    assert catalog.released_after(3).tolist() == []
    assert sorted(catalog.released_after(-1).tolist()) == list(range(10))
