"""Config helpers every part shares: the strict model base, YAML reading, validation and its wording.

Each part's configuration (service, experiments, world, simulator, training) is a tree of
`Strict` pydantic models, read from YAML with `read_mapping` and validated with
`validate_mapping`, so that every part refuses unknown keys and names a bad field the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the field."""


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors and a validated config is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Model = TypeVar("Model", bound=BaseModel)


def describe_validation_error(error: ValidationError, source: str) -> str:
    """One line per bad field: `source: field.path: what is wrong`."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{source}: {field}: {message}")
    return "\n".join(lines)


def validate_mapping(cls: type[Model], data: Any, source: str) -> Model:
    """Validate `data` (a mapping; None means all defaults) into `cls`; `ConfigError` names every bad field."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return cls.model_validate(dict(data or {}))
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, source)) from None


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file; a missing file or bad YAML raises `ConfigError` naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8), expected YAML") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        # PyYAML's messages span lines and draw a caret; the user gets one line with the position.
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None


def read_mapping(path: str | Path, what: str, **overrides: Any) -> dict[str, Any]:
    """A YAML file's top-level mapping with the non-None `overrides` applied; `ConfigError` names
    the file when it is missing, not YAML, or not a mapping."""
    data = read_yaml(path, what)
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return {**(data or {}), **{key: value for key, value in overrides.items() if value is not None}}


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `data["a"]["b"] = value` for `key` "a.b", creating the parents; `ConfigError` when a parent is not a mapping."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"cannot set {key}: {part} is not a mapping")
        node = child
    node[last] = value
