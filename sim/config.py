"""The simulator's configuration (`config/env.yml`): which world, and the listener model's options.

Parsed and validated once, at the edge (the environments' constructors and the runner's CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sim.world.config import ConfigError, describe_validation_error


class ListenerOptions(BaseModel):
    """Options of the listener model (`sim.listener.ListenerModel`); extensions default to off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_session_steps: int = Field(250, ge=1, le=100_000)  # truncation: the episode's time limit
    popular_start: float = Field(0.0, ge=0.0, le=1.0)  # extension: share of sessions started from the charts
    interest_drift: float = Field(0.0, ge=0.0, le=1.0)  # extension: pull of each listen on the session's interest


class EnvConfig(BaseModel):
    """Where the world lives and how listeners behave."""

    model_config = ConfigDict(extra="allow", frozen=True)  # the runner adds its own sections

    world: Path = Path("data/world")  # generated from `world_config` on first use when missing
    world_config: Path = Path("config/world.yml")
    listener: ListenerOptions = ListenerOptions()


def env_config_from_mapping(data: dict[str, Any] | None, source: str = "env config") -> EnvConfig:
    """Validate a mapping into an `EnvConfig`; raise `ConfigError` naming every bad field."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return EnvConfig.model_validate(data or {})
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, source)) from None


def load_env_config(path: str | Path) -> EnvConfig:
    """Read and validate `config/env.yml` (or another file)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read env config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return env_config_from_mapping(data, source=str(path))
