"""`botify export` (the log as date-partitioned Parquet for other engines) and `botify compact`
(merge many small segments into one, offline)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import duckdb

from botify.columns import EVENTS_TABLE, EXPERIMENTS_TABLE, WORLDS_TABLE, Columns
from botify.config import ConfigError, load_config
from botify.eventlog.layout import SEGMENT_SUFFIX, TEMPLATE_NAME, LogError, LogLayout, connect, file_lock, init_log

PARTITION_COLUMN = "date"


def _quote(path: Path) -> str:
    """`path` as an SQL string literal (COPY takes no parameters for its target)."""
    return "'" + str(path).replace("'", "''") + "'"


def export_parquet(log: str | Path, out: str | Path) -> dict[str, int]:
    """Write the log to `out`: `events/date=YYYY-MM-DD/*.parquet` (hive partitioning by the
    event's UTC date), `experiments.parquet` and `worlds.parquet`. Returns the row count of each table."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LogError(f"{out} exists and is not empty; choose a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    connection = connect(log)
    try:
        present = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        tables = [table for table in (EVENTS_TABLE, EXPERIMENTS_TABLE, WORLDS_TABLE) if table in present]  # worlds: since format 2
        counts = {table: int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]) for table in tables}
        connection.execute(
            f"COPY (SELECT *, CAST({Columns.TS} AS DATE) AS {PARTITION_COLUMN} FROM {EVENTS_TABLE} ORDER BY {Columns.TS}) "
            f"TO {_quote(out / EVENTS_TABLE)} (FORMAT parquet, PARTITION_BY ({PARTITION_COLUMN}), COMPRESSION zstd)"
        )
        for table in tables[1:]:
            connection.execute(f"COPY (SELECT * FROM {table} ORDER BY started) TO {_quote(out / f'{table}.parquet')} (FORMAT parquet)")
    finally:
        connection.close()
    return counts


def compact(log: str | Path) -> tuple[int, int]:
    """Merge every events segment into one; returns (segments before, rows).

    Refused while a service serves this log (it may be sealing segments) or while a reader has
    LOG open: compaction holds LOG for writing, so no reader sees the merged rows twice.
    """
    layout = init_log(log)
    with file_lock(layout.serving_lock, blocking=False) as free:
        if not free:
            raise LogError(f"a service is serving {layout.path}; stop it before compacting")
        try:
            guard = duckdb.connect(str(layout.path))
        except duckdb.Error as error:
            raise LogError(f"cannot compact {layout.path}: it is open elsewhere ({error})") from None
        try:
            segments = [path for path in layout.segment_files(EVENTS_TABLE) if path.name != TEMPLATE_NAME]
            if len(segments) < 2:
                return len(segments), int(guard.execute(f"SELECT count(*) FROM {EVENTS_TABLE}").fetchone()[0])
            directory = layout.directory(EVENTS_TABLE)
            name = f"{time.time_ns():019d}-{os.getpid()}-compacted{SEGMENT_SUFFIX}"
            tmp = directory / f".{name}.tmp"
            files = "[" + ", ".join(_quote(path) for path in segments) + "]"
            guard.execute(f"COPY (SELECT * FROM read_parquet({files}) ORDER BY {Columns.TS}) TO {_quote(tmp)} (FORMAT parquet, COMPRESSION zstd)")
            rows = int(guard.execute(f"SELECT count(*) FROM read_parquet({_quote(tmp)})").fetchone()[0])
            os.replace(tmp, directory / name)
            for path in segments:
                path.unlink()
            return len(segments), rows
        finally:
            guard.close()


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
@click.option("--format", "fmt", type=click.Choice(["parquet"]), default="parquet", show_default=True, help="Output format.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="New (or empty) output directory.")
def export_command(config_path: Path | None, log: Path | None, fmt: str, out: Path) -> None:
    """Export the event log as Parquet partitioned by date, for Spark, Polars, pandas and friends.

    Writes OUT/events/date=YYYY-MM-DD/*.parquet, OUT/experiments.parquet and OUT/worlds.parquet.
    Safe while the service runs (it reads what is sealed so far).
    """
    path = _log_path(config_path, log)
    try:
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
