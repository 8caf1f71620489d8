"""Fixtures shared by every test package: a small generated world."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim.world import World, generate_world, world_config_from_mapping

# Commands run by the tests record nothing in MLflow unless a test turns tracking back on.
os.environ["BOTIFY_NO_TRACK"] = "1"

SMALL_WORLD = {
    "seed": 7,
    "tracks": 3000,
    "artists": 200,
    "genres": 8,
    "users": 400,
    "content": {"dim": 16, "min_frames": 4, "max_frames": 12},
}


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world (3,000 tracks, 400 listeners) generated once per test session."""
    return generate_world(world_config_from_mapping(SMALL_WORLD), tmp_path_factory.mktemp("worlds") / "small")


@pytest.fixture(scope="session")
def small_world(small_world_dir: Path) -> World:
    return World(small_world_dir)
