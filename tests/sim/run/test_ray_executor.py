"""Shards as Ray tasks on a local cluster of 2 CPUs: the same sessions and events as local processes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from sim.config import env_config_from_mapping
from sim.run.__main__ import main as run_cli
from sim.run.shards import ClientSpec, ProcessExecutor, RayExecutor, ShardJob, run_shard

# Before Ray is imported (it reads this then): the test cluster listens on loopback only, as `sim.run`'s do.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")

RETURNS = {"enabled": True, "base_rate_per_day": 2.0, "sensitivity": 1.0, "reference": 2.0}


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    """One local cluster for the module (Ray takes seconds to start); the executor uses it as it is."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_tasks_give_the_process_pool_s_sessions(small_world_dir: Path) -> None:
    config = env_config_from_mapping({"world": str(small_world_dir), "returns": RETURNS})
    jobs = [ShardJob(config, 6, (1, 2), 200, ClientSpec("local", "sticky_artist"), shard, 3) for shard in range(3)]
    by_ray = RayExecutor().map(run_shard, jobs)
    by_processes = ProcessExecutor(2).map(run_shard, jobs)
    assert [r.records for r in by_ray] == [r.records for r in by_processes]  # shard by shard, in order
    assert sum(r.returning for result in by_ray for r in result.records) > 20
    assert [(r.served, r.batches) for r in by_ray] == [(r.served, r.batches) for r in by_processes]


def test_multi_on_ray_writes_the_process_run_s_log(small_world_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "env.yml"
    config.write_text(f"world: {small_world_dir}\n")
    rows = []
    for executor in ("process", "ray"):
        log = tmp_path / f"{executor}.duckdb"
        args = ["--episodes", "150", "--config", str(config), "--recommender", "local:sticky_artist", "--log", str(log), "--quiet",
                "--seed", "2", "multi", "--processes", "2", "--executor", executor]
        result = CliRunner().invoke(run_cli, args)
        assert result.exit_code == 0, result.output
        assert "150 sessions" in result.output
        with duckdb.connect(str(log), read_only=True) as connection:
            # A total order: instant skips give a session several events in one millisecond.
            rows.append(sorted(connection.execute("SELECT * EXCLUDE (latency) FROM events").fetchall(), key=repr))
    assert len(rows[0]) > 1000 and rows[1] == rows[0]


def test_an_address_without_a_cluster_is_one_clear_line(small_world_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "env.yml"
    config.write_text(f"world: {small_world_dir}\n")
    base = ["--episodes", "10", "--config", str(config), "--recommender", "local:random", "--quiet", "multi"]
    down = CliRunner().invoke(run_cli, [*base, "--executor", "ray", "--address", "127.0.0.1:9"])
    assert down.exit_code == 1 and "no Ray cluster answers at 127.0.0.1:9" in down.output and "Traceback" not in down.output
    bad = CliRunner().invoke(run_cli, [*base, "--executor", "ray", "--address", "nowhere"])
    assert bad.exit_code == 1 and "is not host:port" in bad.output
    stray = CliRunner().invoke(run_cli, [*base, "--address", "127.0.0.1:6379"])
    assert stray.exit_code == 2 and "--address is for --executor ray" in stray.output
