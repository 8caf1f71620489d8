"""Fixtures of the learned-model tests: a two-day fixed-seed log of the small world, tiny training configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from contracts.catalog import Catalog
from recommenders.models.config import BPRKNNConfig, DSSMConfig
from recommenders.models.sessions import SessionLog
from sim.world import World
from tests.recommenders.models.eventlog import simulate_events, write_duckdb

EPISODES = 800  # sessions over two simulated days: about 6,000 events

# Small enough to train in about a second on one core, large enough to learn the world's signal.
# Day 1 has about 300 DSSM training examples: batches of 32 give 9 optimizer steps an epoch (a
# batch of 256 gave one, and a network that close to its initialisation ranks held-out likes
# at chance in the whole catalog; see test_learned_promises.py).
DSSM_FAST = {"hidden_dim": 16, "embedding_dim": 24, "batch_size": 32, "sampled_negatives": 128, "epochs": 6, "lr": 0.003}
BPR_FAST = {"embedding_dim": 32, "batch_size": 2048, "epochs": 15, "early_stopping_patience": 15}


@pytest.fixture(scope="session")
def two_day_events(small_world: World) -> pd.DataFrame:
    """`EPISODES` cold-start sessions (random and sticky_artist) over 2024-01-01 and 2024-01-02."""
    return simulate_events(small_world, EPISODES, seed=3, days=2)


@pytest.fixture(scope="session")
def two_day_log_path(two_day_events: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`two_day_events` as a DuckDB event log file."""
    return write_duckdb(two_day_events, tmp_path_factory.mktemp("logs") / "events.duckdb")


@pytest.fixture(scope="session")
def split_log(two_day_events: pd.DataFrame, small_catalog: Catalog) -> tuple[SessionLog, SessionLog]:
    """(day 1, day 2) of `two_day_events` as session logs."""
    return SessionLog.from_events(two_day_events).split_days(1)


@pytest.fixture(scope="session")
def dssm_config() -> DSSMConfig:
    return DSSMConfig(**DSSM_FAST)


@pytest.fixture(scope="session")
def bpr_config() -> BPRKNNConfig:
    return BPRKNNConfig(**BPR_FAST)


@pytest.fixture(scope="session")
def fitted(split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog, dssm_config: DSSMConfig, bpr_config: BPRKNNConfig) -> dict[str, Any]:
    """`dssm` and `bpr_knn` trained on day 1 of the two-day log, as `fit` left them."""
    from recommenders.models.bpr_knn import BPRKNNRecommender
    from recommenders.models.dssm import DSSMRecommender

    train = split_log[0]
    return {
        "dssm": DSSMRecommender(small_catalog).fit(train, config=dssm_config),
        "bpr_knn": BPRKNNRecommender(small_catalog).fit(train, config=bpr_config),
    }


@pytest.fixture(scope="session")
def artifacts(fitted: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Artifact directories of the `fitted` models."""
    root = tmp_path_factory.mktemp("artifacts")
    return {name: model.save(root / name) for name, model in fitted.items()}
