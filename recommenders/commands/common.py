"""Inputs shared by the `train` and `evaluate` commands, with errors turned into clean CLI messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from contracts.catalog import Catalog, CatalogError
from recommenders.dataset import Dataset, DatasetError, logged_worlds
from recommenders.models.sessions import SessionLog, SessionLogError, as_session_log


def open_catalog(world: Path) -> Catalog:
    """The public catalog of `world`, or a ClickException saying what is wrong."""
    try:
        return Catalog(world)
    except CatalogError as error:
        raise click.ClickException(str(error)) from None


def read_sessions(events: Path, catalog: Catalog) -> SessionLog:
    """The event log at `events` as sessions checked against `catalog`, or a ClickException.

    A log whose service recorded another world than `catalog`'s is refused: its track ids would
    mean other tracks, and a model fitted on it would be silently meaningless.
    """
    try:
        others = [(fingerprint, path) for fingerprint, path in logged_worlds(events) if fingerprint != catalog.fingerprint]
        if others:
            served = ", ".join(f"{path} (fingerprint {fingerprint})" for fingerprint, path in others)
            raise click.ClickException(
                f"{events} was logged by a service serving another world: {served}; --world {catalog.path} has "
                f"fingerprint {catalog.fingerprint}. Pass the world the log was served from."
            )
        return as_session_log(Dataset.from_log(events), catalog.n_tracks)
    except (DatasetError, SessionLogError) as error:
        raise click.ClickException(str(error)) from None


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` pairs into a mapping; values are read as YAML scalars (2 -> int, 0.5 -> float, .inf)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} must look like key=value", param_hint="--param")
        params[key.strip()] = yaml.safe_load(value)
    return params


def day_range(log: SessionLog) -> str:
    """'2024-01-01' or '2024-01-01..2024-01-03': the simulated days the log's sessions start on."""
    if log.n_sessions == 0:
        return "no days"
    import pandas as pd

    first, last = (pd.Timestamp(int(day) * 86_400, unit="s").date() for day in (log.session_day.min(), log.session_day.max()))
    return str(first) if first == last else f"{first}..{last}"
