"""The service config: defaults, overrides, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from botify.app import create_app
from botify.config import ConfigError, ServiceConfig, config_from_mapping, load_config

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_config_is_the_defaults() -> None:
    assert load_config(REPO / "config" / "botify.yml") == ServiceConfig()


def test_overrides_use_dotted_keys_and_skip_none() -> None:
    config = load_config(REPO / "config" / "botify.yml", log="x.duckdb", **{"server.port": 6001, "server.workers": None})

    assert (config.log, config.server.port, config.server.workers) == (Path("x.duckdb"), 6001, 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"wrold": "data/world"}, "botify.yml: wrold: unknown key"),
        ({"server": {"port": 70000}}, "botify.yml: server.port: Input should be less than or equal to 65535"),
        ({"server": {"engine": "uwsgi"}}, "botify.yml: server.engine: Input should be 'granian' or 'gunicorn'"),
        ({"server": {"workers": 0}}, "server.workers: Input should be greater than or equal to 1"),
        ({"history": {"store": "disk"}}, "history.store: Input should be 'memory' or 'redis'"),
        ({"history": {"max_length": 0}}, "history.max_length: Input should be greater than or equal to 1"),
        ({"eventlog": {"flush_window": 0}}, "eventlog.flush_window: Input should be greater than 0"),
        ({"eventlog": {"flush_events": "many"}}, "eventlog.flush_events: Input should be a valid integer"),
        ({"limits": {"max_batch": -1}}, "limits.max_batch: Input should be greater than or equal to 1"),
        ({"day_zero": "yesterday"}, "day_zero: Input should be a valid date"),
        ({"server": {"workers": 2}}, "server.workers == 2 with history.store == 'memory'"),
        ({"server": 5}, "server: Input should be a valid dictionary"),
    ],
)
def test_bad_values_are_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_mapping(data, "botify.yml")

    assert message in str(error.value)


def test_several_workers_with_redis_are_fine() -> None:
    config = config_from_mapping({"server": {"workers": 2}, "history": {"store": "redis"}})

    assert config.server.workers == 2


def test_bad_yaml_and_missing_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("server: [1,\n")

    with pytest.raises(ConfigError, match="bad.yml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read service config .*missing.yml"):
        load_config(tmp_path / "missing.yml")


def test_create_app_fails_fast_on_a_missing_world(tmp_path: Path, experiments_file: Path) -> None:
    with pytest.raises(ConfigError, match="world: .*is not a world directory.*python -m sim.world"):
        create_app({"world": str(tmp_path / "none"), "experiments": str(experiments_file), "log": str(tmp_path / "l.duckdb")})


def test_create_app_fails_fast_on_an_unreachable_redis(tmp_path: Path, small_world_dir: Path, experiments_file: Path) -> None:
    config = {
        "world": str(small_world_dir),
        "experiments": str(experiments_file),
        "log": str(tmp_path / "l.duckdb"),
        "history": {"store": "redis", "redis_url": "redis://127.0.0.1:1/0"},
    }

    with pytest.raises(ConfigError, match="history.redis_url: cannot reach Redis at redis://127.0.0.1:1/0.*scripts/redis.sh start"):
        create_app(config)
