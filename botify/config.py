"""The service's configuration (`config/botify.yml`), validated once at the edge.

`load_config(path, **overrides)` reads the YAML file, applies command-line overrides (dotted
keys such as `server.port`), and validates everything into a frozen `ServiceConfig`. Unknown
keys are errors, and every error names the field it is about. Relative paths are relative to
the working directory, as on the command line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from contracts.config import ConfigError, Strict, read_yaml, set_dotted, validate_mapping

DEFAULT_CONFIG = Path("config/botify.yml")


class ServerConfig(Strict):
    """Where and how the WSGI server listens."""

    engine: Literal["granian", "gunicorn"] = "granian"  # the faster on loopback: docs/botify.md
    host: str = "127.0.0.1"
    port: int = Field(5001, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)  # processes
    threads: int = Field(8, ge=1, le=64)  # request threads per worker: a slow client holds only one (default 1 behind nginx)
    header_timeout: float = Field(5.0, gt=0.0, le=300.0)  # seconds a client may take to send its headers
    front: Literal["none", "nginx"] = "none"  # nginx: takes the clients, passes whole requests (botify/front.py)
    body_timeout: float = Field(5.0, gt=0.0, le=300.0)  # seconds between two reads of a body (front: nginx)

    @model_validator(mode="before")
    @classmethod
    def _one_thread_behind_nginx(cls, data: Any) -> Any:
        """Behind nginx no client holds a request thread, and one thread keeps the tail short (docs/botify.md)."""
        if isinstance(data, dict) and data.get("front") == "nginx" and data.get("threads") is None:
            return {**data, "threads": 1}
        return data


class HistoryConfig(Strict):
    """Where the listen history of the sessions in flight lives."""

    store: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6390/0"  # scripts/redis.sh starts this one
    max_length: int = Field(200, ge=1, le=100_000)  # most recent tracks kept per session
    ttl: int = Field(3600, ge=1)  # seconds an idle session's history is kept (redis)
    max_sessions: int = Field(1_000_000, ge=1)  # memory store: least recently used dropped beyond
    max_bytes: int = Field(2 << 30, ge=1 << 16)  # memory store: least recently used dropped beyond (estimated bytes)


class EventLogConfig(Strict):
    """How often each worker seals its events into a segment, and syncs its write-ahead file to disk."""

    flush_window: float = Field(1.0, gt=0.0, le=3600.0)  # seconds
    flush_events: int = Field(50_000, ge=1)  # flush earlier when a worker holds this many
    fsync_window: float = Field(1.0, ge=0.0, le=3600.0)  # seconds a power loss may take; 0: sync every write


class LimitsConfig(Strict):
    """Bounds on what one request may ask, checked before any work."""

    max_body: int = Field(4096, ge=64)  # bytes of a single /next or /last body
    max_batch: int = Field(10_000, ge=1)  # items of one /batch
    max_batch_body: int = Field(8 * 1024 * 1024, ge=64)  # bytes of one /batch body


class ServiceConfig(Strict):
    """Everything `create_app` and `botify serve` need."""

    world: Path = Path("data/world")
    experiments: Path = Path("config/experiments.yml")
    log: Path = Path("data/events.duckdb")
    seed: int = Field(0, ge=0, lt=2**63)  # mixed into every request's seed
    day_zero: dt.date = dt.date(2025, 12, 31)  # the date of simulated day 0 (sim.run starts day 1 on 2026-01-01): a client's ts -> Request.day
    server: ServerConfig = ServerConfig()
    history: HistoryConfig = HistoryConfig()
    eventlog: EventLogConfig = EventLogConfig()
    limits: LimitsConfig = LimitsConfig()

    @model_validator(mode="after")
    def _check_shared_history(self) -> ServiceConfig:
        if self.server.workers > 1 and self.history.store == "memory":
            raise ValueError(
                f"server.workers == {self.server.workers} with history.store == 'memory': each worker "
                "would keep its own history; set history.store: redis (start one with scripts/redis.sh start)"
            )
        return self


def config_from_mapping(data: Mapping[str, Any] | None, source: str = "service config", **overrides: Any) -> ServiceConfig:
    """Validate a mapping (plus dotted-key overrides that are not None) into a `ServiceConfig`."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    merged: dict[str, Any] = {key: (dict(value) if isinstance(value, Mapping) else value) for key, value in (data or {}).items()}
    for key, value in overrides.items():
        if value is not None:
            set_dotted(merged, key.replace("__", "."), value)
    return validate_mapping(ServiceConfig, merged, source)


def load_config(path: str | Path | None = None, **overrides: Any) -> ServiceConfig:
    """Read `config/botify.yml` (or `path`), apply overrides such as `server.port=5002`, validate.

    Without `path`, the default file is used when it exists and the built-in defaults otherwise.
    Overrides use dotted keys (or `__` in keyword form: `server__port=5002`); None means "not given".
    """
    if path is None:
        data = read_yaml(DEFAULT_CONFIG, "service config") if DEFAULT_CONFIG.is_file() else None
        source = str(DEFAULT_CONFIG)
    else:
        data = read_yaml(path, "service config")
        source = str(path)
    return config_from_mapping(data, source, **overrides)
