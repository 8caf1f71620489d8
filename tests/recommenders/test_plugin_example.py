"""The example plugin package installs, registers through its entry point and passes the contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.catalog import Catalog
from recommenders import registry
from recommenders.testing import check_recommender
from tests.example_plugin import EXAMPLE_DISTRIBUTION, EXAMPLE_NAME, installed_example_plugin

pytestmark = pytest.mark.slow  # builds and installs a wheel (a few seconds)


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with installed_example_plugin(tmp_path_factory.mktemp("plugin")):
        yield


def test_installed_plugin_is_listed_with_its_origin(example_plugin: None) -> None:
    assert EXAMPLE_NAME in registry.names()
    entry = registry.entries()[EXAMPLE_NAME]
    assert entry.origin == f"plugin {EXAMPLE_DISTRIBUTION}"
    assert entry.target == "botify_plugin_example.recent_artist_mix:RecentArtistMixRecommender"


def test_registry_builds_it_and_it_passes_the_contract(example_plugin: None, small_catalog: Catalog) -> None:
    recommender = registry.make(EXAMPLE_NAME, small_catalog, {"window": 2, "seed": 3})
    assert type(recommender).__name__ == "RecentArtistMixRecommender" and recommender.get_params()["window"] == 2
    report = check_recommender(lambda: registry.make(EXAMPLE_NAME, small_catalog), small_catalog)
    assert "no repeats when avoidable" in report.checks


def test_bad_parameters_name_the_plugin(example_plugin: None, small_catalog: Catalog) -> None:
    with pytest.raises(registry.RegistryError, match=r"recent_artist_mix.*window == 0"):
        registry.make(EXAMPLE_NAME, small_catalog, {"window": 0})

