"""The event log in the app: this module owns its lifecycle in the service, as flaskr's `db.py` does.

`init_app(app, ...)` creates or checks LOG, records the start in the log's `experiments` and `worlds` tables
and gives the app a per-process `EventWriter` (in `app.extensions`);
`close_log(app)` seals what is buffered (the servers call it at shutdown); `init-db` is the
command that creates (or resets) a log by hand.

The log itself (layout, writer, reader, export) lives in the ground floor, `contracts.eventlog`;
its tables and columns in `contracts.columns`. This module only wires it into the app.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import click
from flask import Flask

from botify.config import ConfigError, EventLogConfig, load_config
from contracts.eventlog.layout import LogError, init_log
from contracts.eventlog.writer import EventWriter, record_start

EXTENSION = "botify.eventlog"

__all__ = ["close_log", "init_app", "init_db_command"]


def close_log(app: Flask) -> None:
    """Seal the events `app` has buffered in this process; safe to call more than once."""
    writer = app.extensions.get(EXTENSION)
    if writer is not None:
        writer.close()


def init_app(
    app: Flask,
    log: Path,
    settings: EventLogConfig,
    experiment_names: Sequence[str],
    start_rows: Sequence[dict[str, object]],
    started_us: int | None = None,
    world: Mapping[str, object] | None = None,
) -> EventWriter:
    """Create or check LOG, record this start (experiments and `world`), and attach a writer and the `init-db` command."""
    layout = init_log(log)
    record_start(layout, start_rows, started_us if started_us is not None else time.time_ns() // 1000, world)
    writer = EventWriter(layout, experiment_names, settings.flush_window, settings.flush_events, settings.fsync_window)
    app.extensions[EXTENSION] = writer
    app.cli.add_command(init_db_command)
    return writer


@click.command("init-db")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Service config (default: config/botify.yml when present).")
@click.option("--log", type=click.Path(path_type=Path), default=None, help="Event log path, LOG (default: the config's `log`, data/events.duckdb).")
@click.option("--reset", is_flag=True, help="Delete every event and start record of the log (asks first).")
@click.option("--yes", is_flag=True, help="Do not ask before --reset.")
def init_db_command(config_path: Path | None, log: Path | None, reset: bool, yes: bool) -> None:
    """Create the event log (LOG plus its segments directory), or check and repair it.

    Without --reset this never deletes anything: it creates what is missing and re-points the
    views when the log was moved. The service does the same at start-up.
    """
    try:
        path = log if log is not None else load_config(config_path).log
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if reset and not yes:
        click.confirm(f"Delete every event of {path}?", abort=True)
    try:
        layout = init_log(path, reset=reset)
    except LogError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{'Reset' if reset else 'Initialized'} the event log {layout.path} (segments in {layout.segments}).")
