"""Fixtures of the recommender tests: hand-written catalogs, a world with releases, a synthetic log."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from contracts.catalog import Catalog
from recommenders.testing import make_events, write_catalog
from sim.world import generate_world, world_config_from_mapping

# Ten tracks, four artists; popularity falls with the id (track 0 the most popular).
TINY_ARTISTS = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]

RELEASE_WORLD = {
    "seed": 11,
    "tracks": 1500,
    "artists": 100,
    "genres": 5,
    "users": 100,
    "new_tracks_per_day": 50,
    "release_days": 2,
    "content": {"dim": 4, "min_frames": 2, "max_frames": 4},
}


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """The ten-track catalog of `TINY_ARTISTS`: answers can be written out by hand."""
    return Catalog(write_catalog(tmp_path_factory.mktemp("tiny") / "world", artist=TINY_ARTISTS))


@pytest.fixture(scope="session")
def small_catalog(small_world_dir: Path) -> Catalog:
    return Catalog(small_world_dir)


@pytest.fixture(scope="session")
def release_catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """1,500 tracks on day 0, then 50 new tracks on each of days 1 and 2."""
    directory = generate_world(world_config_from_mapping(RELEASE_WORLD), tmp_path_factory.mktemp("worlds") / "releases")
    return Catalog(directory)


@pytest.fixture(scope="session")
def small_events(small_catalog: Catalog) -> pd.DataFrame:
    """A synthetic log over the small world (80 users, 3 sessions of 8 plays each)."""
    return make_events(small_catalog, users=80)
