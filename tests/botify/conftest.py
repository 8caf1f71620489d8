"""Fixtures of the service's tests: configs, an app and its test client, Redis, real servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis
import yaml
from flask import Flask
from flask.testing import FlaskClient

from botify import eventlog
from botify.app import create_app
from recommenders import registry
from tests.botify.live import HOST, Server, free_port

REPO = Path(__file__).resolve().parents[2]
PROBES = {
    "history_probe": "tests.botify.probe:HistoryProbe",
    "broken": "tests.botify.probe:Broken",
    "out_of_catalog": "tests.botify.probe:OutOfCatalog",
    "score_probe": "tests.botify.probe:ScoreProbe",
}


@pytest.fixture(scope="session", autouse=True)
def probes_registered() -> None:
    """The test recommenders, registered in this process."""
    for name, target in PROBES.items():
        registry.register(name, target)


@pytest.fixture(scope="session")
def probe_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that registers the test recommenders through the entry-point group, for
    server processes (put it on PYTHONPATH): what an installed plugin package looks like."""
    site = tmp_path_factory.mktemp("site")
    info = site / "botify_test_probes-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: botify-test-probes\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {target}" for name, target in PROBES.items())
    (info / "entry_points.txt").write_text(f"[botify.recommenders]\n{lines}\n")
    return site


def write_experiments(path: Path, *experiments: dict[str, Any]) -> Path:
    """Write an experiments file; each experiment is a mapping as in config/experiments.yml."""
    path.write_text(yaml.safe_dump({"experiments": list(experiments)}))
    return path


def experiment(name: str, *recommenders: str, serving: bool = False) -> dict[str, Any]:
    return {"name": name, "serving": serving, "treatments": [{"recommender": r} for r in recommenders]}


@pytest.fixture
def experiments_file(tmp_path: Path) -> Path:
    """The cold-start experiment (random vs sticky_artist) plus a recorded-only experiment."""
    return write_experiments(
        tmp_path / "experiments.yml",
        experiment("cold_start", "random", "sticky_artist", serving=True),
        experiment("recorded", "random", "random", "random"),
    )


@pytest.fixture
def probe_experiments(tmp_path: Path) -> Path:
    """Both treatments answer the history length, so answers reveal the history."""
    return write_experiments(tmp_path / "probe.yml", experiment("probe", "history_probe", "history_probe", serving=True))


@pytest.fixture
def make_app(tmp_path: Path, small_world_dir: Path, experiments_file: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps with the small world and a fresh log under tmp_path; keyword arguments
    override config keys (dotted keys as `**{"history.store": "redis"}`)."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        config: dict[str, Any] = {
            "world": str(small_world_dir),
            "experiments": str(experiments_file),
            "log": str(tmp_path / "log" / "events.duckdb"),
        }
        for key, value in overrides.items():
            node = config
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = str(value) if isinstance(value, Path) else value
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        eventlog.close_log(app)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server (Debian's) on a free loopback port, for the whole session."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: run ./scripts/setup.sh (it installs Debian's redis-server)")
    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://{HOST}:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"redis-server did not start on {url}")
            time.sleep(0.05)
    client.close()
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def serve(tmp_path: Path, probe_site: Path) -> Iterator[Callable[..., Server]]:
    """Start real servers (`python -m botify serve ARGS`); every one is killed at teardown."""
    servers: list[Server] = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(probe_site)])}

    def start(*args: str | Path, wait: bool = True) -> Server:
        server = Server([str(arg) for arg in args], tmp_path / f"server-{len(servers)}.out", env=env)
        servers.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def fresh_redis(redis_url: str) -> str:
    """The session's Redis, emptied: no history left over from an earlier test's users."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


def logged_rows(app: Flask, order_by: str = "") -> list[dict]:
    """Seal the app's buffered events and read them back from its log as dicts (in the order served unless `order_by`)."""
    app.extensions[eventlog.EXTENSION].flush()
    connection = duckdb.connect(str(app.config["BOTIFY"].log), read_only=True)
    try:
        cursor = connection.execute("SELECT * FROM events" + (f" ORDER BY {order_by}" if order_by else ""))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        connection.close()
