"""End to end: the simulator against the real service (gunicorn/granian, real DuckDB file).

A short fixed-seed run; afterwards the event log's sessions must match the simulator's own
count and rewards exactly, and a second run with the same seed must give the same sessions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import requests
import yaml

from sim.config import env_config_from_mapping
from sim.run.shards import ClientSpec, ShardJob, run_shard

EPISODES = 300
REPO = Path(__file__).resolve().parents[2]  # `python -m botify` from here runs this checkout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A running `botify serve`: its port, its log, and a clean stop (SIGTERM flushes the log)."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextlib.contextmanager
def _serving(world_dir: Path, tmp_path: Path, recommenders: list[str], log: Path | None = None) -> Iterator[Service]:
    """`botify serve` with one worker on a free loopback port, experiment 'e2e' with these treatments,
    logging to `log` (default: events.duckdb in `tmp_path`)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    port, log = _free_port(), log or tmp_path / "events.duckdb"
    experiments = tmp_path / "experiments.yml"
    treatments = [{"recommender": name} for name in recommenders]
    experiments.write_text(yaml.safe_dump({"experiments": [{"name": "e2e", "serving": True, "treatments": treatments}]}))
    command = [sys.executable, "-m", "botify", "serve", "--world", str(world_dir), "--experiments", str(experiments), "--log", str(log), "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            with process.stderr:  # type: ignore[union-attr]
                output = process.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            pytest.fail(f"botify did not start: {output}")
        time.sleep(0.1)
    running = Service(process, port, log)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def service(small_world_dir: Path, tmp_path: Path) -> Iterator[Service]:
    """Treatments sticky_artist and random; stopped with SIGTERM (flushes the log)."""
    with _serving(small_world_dir, tmp_path, ["sticky_artist", "random"]) as running:
        yield running


def _simulate(world_dir: Path, port: int, seed: int, client: ClientSpec = ClientSpec("remote")) -> list:
    config = env_config_from_mapping({"world": str(world_dir), "service": {"port": port}})
    return sorted(run_shard(ShardJob(config, seed, (1,), EPISODES, client)).records, key=lambda r: r.session)


def test_event_log_matches_the_simulator(small_world_dir: Path, service: Service) -> None:
    records = _simulate(small_world_dir, service.port, seed=21)
    service.stop()
    with duckdb.connect(str(service.log), read_only=True) as connection:
        sessions = connection.execute(
            "SELECT session, count(*) FILTER (WHERE message = 'next'), count(*) FILTER (WHERE message = 'last'), "
            "min(ts), max(ts) FROM events GROUP BY session ORDER BY session"
        ).fetchall()
        # Each listened recommendation's fraction arrives with the message after it; the first
        # message carries the listener's own first track with time 1.0.
        rewards = dict(connection.execute("SELECT session, sum(time) - 1.0 FROM events GROUP BY session").fetchall())
        recommenders = dict(connection.execute("SELECT experiments['e2e'], any_value(recommender) FROM events GROUP BY 1").fetchall())
    assert len(sessions) == len(records) == EPISODES
    assert [(s, n, last) for s, n, last, _, _ in sessions] == [(r.session, r.tracks, 1) for r in records]
    assert all(rewards[r.session] == pytest.approx(r.time, abs=1e-9) for r in records)
    first, last = sessions[0][3], sessions[0][4]
    assert (int(first.timestamp() * 1000), int(last.timestamp() * 1000)) == (records[0].start_ts, records[0].end_ts)
    assert recommenders == {0: "sticky_artist", 1: "random"}


def test_same_seed_same_sessions_over_http(small_world_dir: Path, service: Service) -> None:
    assert _simulate(small_world_dir, service.port, seed=5) == _simulate(small_world_dir, service.port, seed=5)


def test_local_runs_give_the_served_sessions(small_world_dir: Path, tmp_path: Path) -> None:
    # `random` draws every answer from the request seed: only equal seeds, histories and days agree.
    with _serving(small_world_dir, tmp_path, ["random", "random"]) as running:
        served = _simulate(small_world_dir, running.port, seed=8)
    local = _simulate(small_world_dir, running.port, seed=8, client=ClientSpec("local", "random"))  # no HTTP

    assert local == served


def test_a_run_against_a_service_of_another_world_is_refused(small_world_dir: Path, service: Service, tmp_path: Path) -> None:
    import shutil

    from click.testing import CliRunner

    from contracts.catalog import world_fingerprint
    from sim.run.__main__ import main

    other = shutil.copytree(small_world_dir, tmp_path / "other-world")
    manifest = yaml.safe_load((other / "world.yml").read_text())
    manifest["config"]["seed"] += 1  # another world as far as the fingerprint goes
    (other / "world.yml").write_text(yaml.safe_dump(manifest))
    config = tmp_path / "env.yml"
    config.write_text(yaml.safe_dump({"world": str(other), "service": {"port": service.port}}))

    result = CliRunner().invoke(main, ["--episodes", "5", "--config", str(config), "--days", "1", "--quiet", "single"])

    served = world_fingerprint(small_world_dir)
    assert result.exit_code == 1, result.output
    assert f"serves another world (fingerprint {served}" in result.output and world_fingerprint(other) in result.output
    assert requests.get(f"http://127.0.0.1:{service.port}/", timeout=5).json()["world"] == served
    service.stop()
    with duckdb.connect(str(service.log), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM events").fetchone() == (0,)
        assert connection.execute("SELECT fingerprint, path FROM worlds").fetchall() == [(served, str(small_world_dir.absolute()))]


def test_replicas_behind_a_list_give_one_service_s_sessions(small_world_dir: Path, tmp_path: Path) -> None:
    """Two `botify serve` replicas writing one log, addressed as a list: each listener stays on one
    replica, and the sessions and the events are those of one service."""
    from sim.run.clients import ReplicaClient, remote_client

    with _serving(small_world_dir, tmp_path / "one", ["sticky_artist", "random"]) as one:
        alone = _simulate(small_world_dir, one.port, seed=13)
        one.stop()
    log = tmp_path / "shared" / "events.duckdb"
    with _serving(small_world_dir, tmp_path / "shared", ["sticky_artist", "random"]) as a, \
            _serving(small_world_dir, tmp_path / "shared", ["sticky_artist", "random"], log=log) as b:
        replicas = [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]
        config = env_config_from_mapping({"world": str(small_world_dir), "service": {"replicas": replicas}})
        replicated = sorted(run_shard(ShardJob(config, 13, (1,), EPISODES, ClientSpec("remote"))).records, key=lambda r: r.session)
        client = remote_client(config.service)
        assert isinstance(client, ReplicaClient)
        sides = {client.replica_of(r.user) for r in replicated}
        a.stop()
        b.stop()
    assert replicated == alone
    assert sides == {0, 1}  # both replicas served
    with duckdb.connect(str(log), read_only=True) as connection:
        per_session = connection.execute(
            "SELECT session, count(*) FILTER (WHERE message = 'next'), count(*) FILTER (WHERE message = 'last') FROM events GROUP BY session ORDER BY session"
        ).fetchall()
    assert per_session == [(r.session, r.tracks, 1) for r in alone]
