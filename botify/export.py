"""`botify export` and `botify compact`: the commands over `contracts.eventlog.export`."""

from __future__ import annotations

from pathlib import Path

import click

from botify.config import ConfigError, load_config
from contracts.columns import EVENTS_TABLE, EXPERIMENTS_TABLE, WORLDS_TABLE
from contracts.eventlog.export import RECTOOLS_FILE, compact, export_parquet, export_rectools
from contracts.eventlog.layout import LogError, LogLayout


def _log_path(config_path: Path | None, log: Path | None) -> Path:
    try:
        return log if log is not None else load_config(config_path).log
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


_config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Service config (default: config/botify.yml when present).")
_log_option = click.option("--log", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Event log LOG (default: the config's `log`, data/events.duckdb).")


@click.command("export")
@_config_option
@_log_option
@click.option("--format", "fmt", type=click.Choice(["parquet", "rectools"]), default="parquet", show_default=True,
              help="parquet: every table, partitioned by date; rectools: interactions.csv in RecTools' columns.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="New (or empty) output directory.")
def export_command(config_path: Path | None, log: Path | None, fmt: str, out: Path) -> None:
    """Export the event log for other engines: Parquet for Spark, Polars and pandas, or CSV for RecTools.

    parquet writes OUT/events/date=YYYY-MM-DD/*.parquet, OUT/experiments.parquet and
    OUT/worlds.parquet; rectools writes OUT/interactions.csv with the columns user_id, item_id,
    weight (fraction listened) and datetime, which RecTools' `Dataset.construct` reads.
    Safe while the service runs (it reads what is sealed so far).
    """
    path = _log_path(config_path, log)
    try:
        if fmt == "rectools":
            rows = export_rectools(path, out)[EVENTS_TABLE]
            click.echo(f"Exported {rows} events of {path} to {out / RECTOOLS_FILE} (rectools: user_id, item_id, weight, datetime).")
            return
        counts = export_parquet(path, out)
    except LogError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"Exported {counts[EVENTS_TABLE]} events, {counts[EXPERIMENTS_TABLE]} experiment rows and "
        f"{counts.get(WORLDS_TABLE, 0)} world rows of {path} to {out} ({fmt})."
    )


@click.command("compact")
@_config_option
@_log_option
def compact_command(config_path: Path | None, log: Path | None) -> None:
    """Merge the log's many small segments into one (faster queries). Stop the service first."""
    path = _log_path(config_path, log)
    try:
        before, rows = compact(path)
    except LogError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Compacted {before} segments of {LogLayout.of(path).path} into one ({rows} events).")
