"""Fixtures of the lens tests: a quickly trained tag model on the small world and a local run's log."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from contracts.catalog import Catalog
from recommenders.models.content_config import EncoderConfig, TagModelConfig
from recommenders.models.tags import TagRecommender
from sim.run.__main__ import main as run_cli

# A tag model trained in seconds: the pages need its probabilities, not its skill.
QUICK = TagModelConfig(
    epochs=2,
    batch_size=128,
    lr=3e-3,
    encoder=EncoderConfig(d_model=16, heads=2, layers=1, feedforward=32, dropout=0.0),
    head_hidden=32,
    test_fraction=0.3,
    max_crop=8,
)


@pytest.fixture(scope="session")
def lens_artifacts(small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An --artifacts directory holding one trained `tags` model."""
    root = tmp_path_factory.mktemp("artifacts")
    TagRecommender(Catalog(small_world_dir)).fit(None, config=QUICK).save(root / "tags")
    return root


@pytest.fixture(scope="session")
def lens_log(small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local run's log of the small world (its `worlds` table names the world)."""
    folder = tmp_path_factory.mktemp("lens-log")
    config = folder / "env.yml"
    config.write_text(f"world: {small_world_dir}\n")
    log = folder / "events.duckdb"
    args = ["--episodes", "30", "--config", str(config), "--recommender", "local:sticky_artist", "--log", str(log), "--quiet"]
    result = CliRunner().invoke(run_cli, args)
    assert result.exit_code == 0, result.output
    return log
