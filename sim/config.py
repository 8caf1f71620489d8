"""The simulator's configuration (`config/env.yml`): which world, and the listener model's options.

Parsed and validated once, at the edge (the environments' constructors and the runner's CLI).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from contracts.config import ConfigError, Strict, read_mapping, validate_mapping


class ListenerOptions(Strict):
    """Options of the listener model (`sim.listener.ListenerModel`); extensions default to off."""

    max_session_steps: int = Field(250, ge=1, le=100_000)  # truncation: the episode's time limit
    popular_start: float = Field(0.0, ge=0.0, le=1.0)  # extension: share of sessions started from the charts
    interest_drift: float = Field(0.0, ge=0.0, le=1.0)  # extension: pull of each listen on the session's interest


class ServiceOptions(Strict):
    """How the runner reaches botify."""

    host: str = "127.0.0.1"
    port: int = Field(5001, ge=1, le=65535)
    timeout_s: float = Field(30.0, gt=0.0)  # per HTTP call
    retries: int = Field(4, ge=0, le=20)  # further tries of a failed call, with exponential backoff
    backoff_s: float = Field(0.1, ge=0.0)  # first backoff; doubles on each retry
    max_batch: int = Field(5_000, ge=1, le=10_000)  # items per POST /batch
    batch: bool = True  # use POST /batch when the service offers it
    # "host:port" of several botify replicas (sharing Redis and one log); when given, they replace
    # host and port, and each listener's requests go to one of them, chosen by a hash of the user.
    replicas: list[str] = Field(default_factory=list)

    @field_validator("replicas")
    @classmethod
    def _host_port(cls, replicas: list[str]) -> list[str]:
        for replica in replicas:
            host, _, port = replica.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"replica {replica!r} is not host:port")
        return replicas

    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every replica, or of the one service."""
        if not self.replicas:
            return [(self.host, self.port)]
        return [(host, int(port)) for host, _, port in (replica.rpartition(":") for replica in self.replicas)]


class TimeOptions(Strict):
    """Simulated time: when day 1 starts, the daily rhythm of arrivals, request batching."""

    start: date = date(2026, 1, 1)  # simulated day 1 begins at 00:00 UTC of this date
    rhythm_amplitude: float = Field(0.6, ge=0.0, le=1.0)  # arrivals ~ 1 + a * cos(2 pi (h - peak) / 24)
    peak_hour: float = Field(20.0, ge=0.0, lt=24.0)
    batch_window_s: float = Field(900.0, gt=0.0)  # simulated seconds of requests gathered per batch (session clocks stay exact)


class ReturnOptions(Strict):
    """Returning listeners: after a session a listener comes back at a hazard rate that grows
    with how satisfying the session was: rate = base_rate_per_day * exp(sensitivity * (time - reference)),
    with `time` the session's total listened fraction. Off in the course-compatible config."""

    enabled: bool = False
    base_rate_per_day: float = Field(0.5, gt=0.0)
    sensitivity: float = Field(0.5, ge=0.0)
    reference: float = Field(3.0, ge=0.0)


class EnvConfig(Strict):
    """Where the world lives, how listeners behave, and how `python -m sim.run` drives the service."""

    world: Path = Path("data/world")  # generated from `world_config` on first use when missing
    world_config: Path = Path("config/world.yml")
    listener: ListenerOptions = ListenerOptions()
    service: ServiceOptions = ServiceOptions()
    time: TimeOptions = TimeOptions()
    returns: ReturnOptions = ReturnOptions()


def env_config_from_mapping(data: dict[str, Any] | None, source: str = "env config") -> EnvConfig:
    """Validate a mapping into an `EnvConfig`; raise `ConfigError` naming every bad field."""
    return validate_mapping(EnvConfig, data, source)


def load_env_config(path: str | Path) -> EnvConfig:
    """Read and validate `config/env.yml` (or another file)."""
    return env_config_from_mapping(read_mapping(path, "env config"), source=str(path))


DEFAULT_ENV_CONFIG = Path("config/env.yml")


def env_config_or_defaults(path: Path) -> EnvConfig:
    """`load_env_config(path)`, or the defaults when the default file is absent (a plugin's own checkout has none)."""
    if path.exists():
        return load_env_config(path)
    if path == DEFAULT_ENV_CONFIG:
        return EnvConfig()
    raise ConfigError(f"env config {path} does not exist")
