"""The one reader of the event log: `open_log(path)` gives a read-only DuckDB connection on which the
log's tables are named as in `contracts.columns` (`events`, and `experiments` and `worlds` where the
log has them), whatever the log's form.

A log is one of: LOG, the DuckDB file of views that `botify serve` writes (readable while the
service runs); its live segments directory (`<LOG stem>.segments/`); a `botify export` directory
(`events/date=.../*.parquet`, `experiments.parquet`, `worlds.parquet`); a Parquet file; a directory
of Parquet files; or a glob (`logs/*.parquet`). Nothing is ever written.
"""

from __future__ import annotations

import glob
from pathlib import Path

import duckdb

from contracts.columns import EVENTS_TABLE, EXPERIMENTS_TABLE, WORLDS_TABLE, sql_string
from contracts.eventlog.layout import SEGMENT_SUFFIX, TABLES, LogError, LogLayout, duckdb_message

_GLOB_CHARACTERS = set("*?[")


def log_file_kind(path: Path) -> str | None:
    """'duckdb' or 'parquet' from a file's first bytes, or None for anything else (a CSV, say)."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if head[:4] == b"PAR1":
        return "parquet"
    return "duckdb" if head[8:12] == b"DUCK" else None  # bytes 8..12 of a DuckDB database file


def directory_tables(directory: Path) -> dict[str, str]:
    """Table name -> Parquet path or glob, when `directory` is a `botify export` or a live segments
    directory (both hold `events/`); else {}."""
    if not (directory / EVENTS_TABLE).is_dir():
        return {}
    tables = {EVENTS_TABLE: str(directory / EVENTS_TABLE / "**" / f"*{SEGMENT_SUFFIX}")}
    for table in (EXPERIMENTS_TABLE, WORLDS_TABLE):
        if (directory / f"{table}.parquet").is_file():  # an export
            tables[table] = str(directory / f"{table}.parquet")
        elif (directory / table).is_dir():  # segments
            tables[table] = str(directory / table / f"*{SEGMENT_SUFFIX}")
    return tables


def open_log(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the log at `path` (any form of the module docstring).

    Raises `LogError` naming the path when it is missing, of another kind, or unreadable; the
    columns are not checked here (each reader checks the ones it needs).
    """
    text = str(path)
    if _GLOB_CHARACTERS & set(text):
        return _parquet_views({EVENTS_TABLE: text}, text)
    p = Path(text)
    if p.is_dir():
        tables = directory_tables(p)
        if tables:
            return _parquet_views(tables, text)
        if not any(p.rglob(f"*{SEGMENT_SUFFIX}")):
            raise LogError(f"event log {text} is a directory without any .parquet file")
        return _parquet_views({EVENTS_TABLE: str(p / "**" / f"*{SEGMENT_SUFFIX}")}, text)
    if not p.exists():
        raise LogError(f"event log {text} does not exist")
    kind = log_file_kind(p)
    if kind == "parquet":
        return _parquet_views({EVENTS_TABLE: text}, text)
    if kind != "duckdb":
        raise LogError(f"event log {text} is neither a DuckDB database nor a Parquet file")
    try:
        return duckdb.connect(text, read_only=True)
    except duckdb.Error as error:
        raise LogError(f"cannot open event log {text} read-only: {duckdb_message(error)}") from None


def log_state(path: str | Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime in ns) of every file that the log at `path` reads, sorted: equal states
    mean equal contents, so a reader may reuse what it computed from the same state.

    Segments are sealed under a temporary name and renamed into place, and a DuckDB database
    changes its file or its `.wal` beside it, so every change a reader could see changes the
    state. Files that vanish while they are listed are left out (the next call sees the change).
    """
    text = str(path)
    if _GLOB_CHARACTERS & set(text):
        candidates = [Path(name) for name in glob.glob(text, recursive=True)]
    else:
        p = Path(text)
        if p.is_dir():
            candidates = list(p.rglob(f"*{SEGMENT_SUFFIX}"))
        else:
            candidates = [p, p.with_name(p.name + ".wal")]
            segments = LogLayout.of(p).segments  # a LOG of views: its sealed segments
            for table in TABLES:
                candidates.extend((segments / table).glob(f"*{SEGMENT_SUFFIX}"))
    state = []
    for candidate in candidates:
        try:
            info = candidate.stat()
        except OSError:
            continue
        state.append((str(candidate), info.st_size, info.st_mtime_ns))
    return tuple(sorted(state))


def event_files(path: str | Path) -> list[Path] | None:
    """The Parquet files whose rows are the `events` of the log at `path`, sorted, or None when its
    events are rows of a DuckDB database rather than files.

    A sealed segment never changes (it is written under a temporary name and renamed into place),
    so a reader may keep what it computed from a file for as long as the file keeps its size and
    modification time. Files that vanish while they are listed are left out.
    """
    text = str(path)
    if _GLOB_CHARACTERS & set(text):
        return sorted(Path(name) for name in glob.glob(text, recursive=True) if Path(name).is_file())
    p = Path(text)
    if p.is_dir():
        pattern = directory_tables(p).get(EVENTS_TABLE, str(p / "**" / f"*{SEGMENT_SUFFIX}"))
        return sorted(Path(name) for name in glob.glob(pattern, recursive=True) if Path(name).is_file())
    if p.is_file() and log_file_kind(p) == "parquet":
        return [p]
    segments = LogLayout.of(p).directory(EVENTS_TABLE)
    if p.is_file() and segments.is_dir():  # a LOG of views over its sealed segments
        return sorted(segments.glob(f"*{SEGMENT_SUFFIX}"))
    return None


def tables(connection: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of the tables and views the connection shows."""
    return {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def _parquet_views(sources: dict[str, str], text: str) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    try:
        for table, pattern in sources.items():
            options = ", union_by_name = true" if table == EVENTS_TABLE else ""
            connection.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_string(pattern)}{options})")
    except duckdb.Error as error:
        connection.close()
        raise LogError(f"cannot read Parquet event log {text}: {duckdb_message(error)}") from None
    return connection
