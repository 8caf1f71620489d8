"""The plugin's own tests: the Botify Lab contract kit, plus what this recommender promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from botify_plugin_example import RecentArtistMixRecommender

from contracts.catalog import Catalog
from recommenders.base import Request
from recommenders.testing import check_recommender, write_catalog

# Twelve tracks: artist 0 has 0-2, artist 1 has 3-5, artist 2 has 6-8, artist 3 has 9-11.
ARTISTS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(write_catalog(tmp_path / "world", artist=ARTISTS))


def test_passes_the_contract(catalog: Catalog) -> None:
    report = check_recommender(lambda: RecentArtistMixRecommender(catalog), catalog)
    assert "batch agrees with single" in report.checks


def test_mixes_the_recently_liked_artists(catalog: Catalog) -> None:
    recommender = RecentArtistMixRecommender(catalog, window=2)
    # Liked: 0 (artist 0) and 3 (artist 1); skipped: 6 (artist 2).
    requests = [Request(user=1, track=6, time=0.1, history=(0, 3, 6), times=(1.0, 0.8, 0.1), seed=s) for s in range(200)]
    tracks = {recommender.recommend(r).track for r in requests}
    assert tracks == {1, 2, 4, 5}


def test_unknown_parameter_is_refused(catalog: Catalog) -> None:
    with pytest.raises(TypeError, match="windw"):
        RecentArtistMixRecommender(catalog, windw=2)  # type: ignore[call-arg]
