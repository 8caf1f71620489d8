"""The log as date-partitioned Parquet for other engines (`export_parquet`), as RecTools'
interactions table (`export_rectools`), and the merge of many small segments into one, offline
(`compact`). The `botify export` and `botify compact` commands call these."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

from contracts.columns import EVENTS_TABLE, EXPERIMENTS_TABLE, WORLDS_TABLE, Columns, RecToolsColumns, sql_string
from contracts.eventlog.layout import ROLLUP_SUFFIX, SEGMENT_SUFFIX, TEMPLATE_NAME, LogError, connect, duckdb_message, file_lock, init_log
from contracts.eventlog.summary import summary_path

PARTITION_COLUMN = "date"
RECTOOLS_FILE = "interactions.csv"


def _count(connection: duckdb.DuckDBPyConnection, sql: str) -> int:
    """The single number a `SELECT count(*) ...` returns."""
    row = connection.execute(sql).fetchone()
    assert row is not None  # an aggregate always returns one row
    return int(row[0])


def _quote(path: Path) -> str:
    return sql_string(str(path))  # COPY takes no parameters for its target


def export_parquet(log: str | Path, out: str | Path) -> dict[str, int]:
    """Write the log to `out`: `events/date=YYYY-MM-DD/*.parquet` (hive partitioning by the
    event's UTC date), `experiments.parquet` and `worlds.parquet`. Returns the row count of each table."""
    out = Path(out)
    _empty_out(out)
    connection = connect(log)
    try:
        present = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        tables = [table for table in (EVENTS_TABLE, EXPERIMENTS_TABLE, WORLDS_TABLE) if table in present]  # worlds: since format 2
        counts = {table: _count(connection, f"SELECT count(*) FROM {table}") for table in tables}
        connection.execute(
            f"COPY (SELECT *, CAST({Columns.TS} AS DATE) AS {PARTITION_COLUMN} FROM {EVENTS_TABLE} ORDER BY {Columns.TS}) "
            f"TO {_quote(out / EVENTS_TABLE)} (FORMAT parquet, PARTITION_BY ({PARTITION_COLUMN}), COMPRESSION zstd)"
        )
        for table in tables[1:]:
            connection.execute(f"COPY (SELECT * FROM {table} ORDER BY started) TO {_quote(out / f'{table}.parquet')} (FORMAT parquet)")
    except duckdb.Error as error:  # a segment cut short or corrupt: DuckDB's message names the file
        raise LogError(f"cannot export event log {log}: {duckdb_message(error)}") from None
    finally:
        connection.close()
    return counts


def _empty_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise LogError(f"{out} exists and is not empty; choose a new --out directory")
    out.mkdir(parents=True, exist_ok=True)


def export_rectools(log: str | Path, out: str | Path) -> dict[str, int]:
    """Write the log's playbacks to `out/interactions.csv` in RecTools' columns (`RecToolsColumns`).

    One row per event, oldest first: `user_id, item_id, weight, datetime` from the log's `user,
    track, time, ts`, ready for `rectools.dataset.Dataset.construct(pd.read_csv(path,
    parse_dates=["datetime"]))`. Returns the row count under the events table's name.
    """
    out = Path(out)
    _empty_out(out)
    connection = connect(log)
    try:
        select = ", ".join(
            f"{source} AS {target}"
            for source, target in zip((Columns.USER, Columns.TRACK, Columns.TIME, Columns.TS), RecToolsColumns.ALL, strict=True)
        )
        query = f"SELECT {select} FROM {EVENTS_TABLE} ORDER BY {Columns.TS}, {Columns.USER}"
        count = _count(connection, f"SELECT count(*) FROM {EVENTS_TABLE}")
        connection.execute(f"COPY ({query}) TO {_quote(out / RECTOOLS_FILE)} (FORMAT csv, HEADER true)")
    except duckdb.Error as error:
        raise LogError(f"cannot export event log {log}: {duckdb_message(error)}") from None
    finally:
        connection.close()
    return {EVENTS_TABLE: count}


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
                return len(segments), _count(guard, f"SELECT count(*) FROM {EVENTS_TABLE}")
            directory = layout.directory(EVENTS_TABLE)
            name = f"{time.time_ns():019d}-{os.getpid()}-compacted{SEGMENT_SUFFIX}"
            tmp = directory / f".{name}.tmp"
            files = "[" + ", ".join(_quote(path) for path in segments) + "]"
            guard.execute(f"COPY (SELECT * FROM read_parquet({files}) ORDER BY {Columns.TS}) TO {_quote(tmp)} (FORMAT parquet, COMPRESSION zstd)")
            rows = _count(guard, f"SELECT count(*) FROM read_parquet({_quote(tmp)})")
            os.replace(tmp, directory / name)
            for path in segments:
                path.unlink()
                summary_path(path).unlink(missing_ok=True)  # the merged segment has none: its readers read its events
            for rollup in directory.glob(f"*{ROLLUP_SUFFIX}"):  # they held the merged segments
                rollup.unlink()
            return len(segments), rows
        except duckdb.Error as error:  # nothing was removed: the segments stay as they were
            raise LogError(f"cannot compact event log {layout.path}: {duckdb_message(error)}") from None
        finally:
            guard.close()
