"""Fixtures of the dashboard tests: a synthetic log with a win, an A/A arm and a latency regression."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from abtest.dashboard.app import create_app
from abtest.synthetic import SyntheticExperiment, write_synthetic_log

# T1 listens 25% longer but is served 3x slower (a latency regression); T2 is an A/A arm.
DASHBOARD_EXPERIMENT = SyntheticExperiment("exp", (0.0, 0.25, 0.0), latency_effects=(0.0, 2.0, 0.0))


@pytest.fixture(scope="session")
def dashboard_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 60,000 events over five simulated days, 1,200 users, experiment 'exp'."""
    return write_synthetic_log(tmp_path_factory.mktemp("dashboard") / "events.duckdb", 60_000, [DASHBOARD_EXPERIMENT], seed=5)


@pytest.fixture()
def app(dashboard_log: Path) -> Flask:
    return create_app({"LOG": str(dashboard_log), "CACHE": False})


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()
