"""Read the event log for training: a DuckDB file (table or view `events`) or its Parquet export.

Only the columns that training needs are read, so a log with extra columns (or a newer
schema) still loads. Problems are reported as `EventLogError` naming the file and what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from botify.columns import EVENTS_TABLE, Columns

TRAINING_COLUMNS = (Columns.TS, Columns.USER, Columns.SESSION, Columns.MESSAGE, Columns.TRACK, Columns.TIME)
PARQUET_SUFFIXES = (".parquet", ".pq")


class EventLogError(ValueError):
    """An event log that cannot be read or lacks a column that training needs."""


def read_events(path: str | Path, columns: tuple[str, ...] = TRAINING_COLUMNS) -> pd.DataFrame:
    """The events of the log at `path` as a DataFrame with `columns`, in log order.

    `path` is a DuckDB database holding table or view `events`, a Parquet file, or a directory
    of Parquet files (a partitioned export).
    """
    path = Path(path)
    if not path.exists():
        raise EventLogError(f"event log {path} does not exist")
    select = ", ".join(f'"{name}"' for name in columns)
    try:
        if path.is_dir() or path.suffix.lower() in PARQUET_SUFFIXES:
            pattern = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
            with duckdb.connect() as connection:
                relation = connection.read_parquet(pattern)
                _check_columns(path, relation.columns, columns)
                return relation.select(select).df()
        with duckdb.connect(str(path), read_only=True) as connection:
            tables = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            if EVENTS_TABLE not in tables:
                raise EventLogError(f"event log {path} has no table or view {EVENTS_TABLE!r} (found: {', '.join(sorted(tables)) or 'none'})")
            _check_columns(path, connection.table(EVENTS_TABLE).columns, columns)
            return connection.execute(f"SELECT {select} FROM {EVENTS_TABLE}").df()
    except duckdb.Error as error:
        raise EventLogError(f"cannot read event log {path}: {error}") from None


def _check_columns(path: Path, present: list[str], needed: tuple[str, ...]) -> None:
    missing = [name for name in needed if name not in present]
    if missing:
        raise EventLogError(f"event log {path} lacks column(s) {', '.join(missing)} (has: {', '.join(present)})")
