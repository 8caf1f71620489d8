"""Where the event log lives on disk, and how LOG is created.

LOG (`--log`, e.g. `data/events.duckdb`) is a small DuckDB file that holds no rows, only views:
`events` and `experiments` over sealed Parquet segments in a directory next to it::

    data/events.duckdb                  views events, experiments, worlds; table log_info
    data/events.segments/events/        one Parquet file per worker and flush window, each with its
                                        summary beside it (`<name>.summary`: `contracts.eventlog.summary`)
    data/events.segments/experiments/   one Parquet file per service start
    data/events.segments/worlds/        one Parquet file per service start
    data/events.segments/wal/           one write-ahead file per live worker (`contracts.eventlog.wal`)

A segment is written under a temporary name and renamed into place, so a reader never sees a
half-written file. The service never opens LOG while it serves: readers open it with
`duckdb.connect(LOG, read_only=True)` at any time, and every query expands the views' globs
afresh, so it sees every segment sealed so far. Each directory keeps an empty template segment,
written from the declared schema (`contracts.columns`), so the views resolve before the first event.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.columns import FORMAT_VERSION, TABLE_TYPES, create_table_sql, sql_string

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "0000000000000000000-template.parquet"
SEGMENT_SUFFIX = ".parquet"
SUMMARY_SUFFIX = ".summary"  # a sealed segment's summary beside it (`contracts.eventlog.summary`), read by no view
ROLLUP_SUFFIX = ".rollup"  # the summaries of many segments added up (`contracts.eventlog.rollup`), read by no view
TMP_SUFFIX = ".tmp"
INFO_TABLE = "log_info"
TABLES = tuple(TABLE_TYPES)
_GLOB_CHARACTERS = set("*?[]{}'")


class LogError(RuntimeError):
    """An event log that cannot be created, opened or written; the message says what to do."""


class ForeignDatabaseError(LogError):
    """LOG is a DuckDB database of something else: botify neither uses nor changes it."""


@cache
def arrow_schemas() -> dict[str, pa.Schema]:
    """The Arrow schema of each table, derived by DuckDB from the declared column types (so the two agree)."""
    connection = duckdb.connect()
    try:
        for table in TABLES:
            connection.execute(create_table_sql(table))
        return {table: connection.sql(f"SELECT * FROM {table}").arrow().schema for table in TABLES}
    finally:
        connection.close()


@dataclass(frozen=True)
class LogLayout:
    """The paths of one event log, derived from LOG."""

    path: Path

    @classmethod
    def of(cls, log: str | Path) -> LogLayout:
        return cls(Path(log).absolute())

    @property
    def segments(self) -> Path:
        """The segments directory: `<LOG without suffix>.segments` next to LOG."""
        return self.path.parent / f"{self.path.stem}.segments"

    def directory(self, table: str) -> Path:
        return self.segments / table

    @property
    def wal(self) -> Path:
        """The write-ahead files' directory: events answered but not yet sealed."""
        return self.segments / "wal"

    @property
    def init_lock(self) -> Path:
        return self.segments / ".init.lock"

    @property
    def serving_lock(self) -> Path:
        return self.segments / ".serving.lock"

    def segment_files(self, table: str) -> list[Path]:
        """The sealed segments of `table` (templates included), in name (time) order."""
        return sorted(self.directory(table).glob(f"*{SEGMENT_SUFFIX}"))

    def view_sql(self, table: str) -> str:
        pattern = str(self.directory(table) / f"*{SEGMENT_SUFFIX}")
        # union_by_name: segments sealed before a column was added read it as NULL.
        return f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet({sql_string(pattern)}, union_by_name = true)"


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The Parquet columns worth dictionary-encoding: the strings (few distinct values: messages,
    recommender names, experiment names), not the ids, times and floats, which are mostly distinct
    and cost the encoder time for nothing."""
    names = []
    for field in schema:
        if pa.types.is_string(field.type):
            names.append(field.name)
        elif pa.types.is_map(field.type) and pa.types.is_string(field.type.key_type):
            names.append(f"{field.name}.key_value.key")
    return names


def write_segment(directory: Path, name: str, table: pa.Table, *, exclusive: bool = False, durable: bool = False) -> Path | None:
    """Seal `table` as `directory/name` atomically (temporary file, then rename).

    With `exclusive`, an existing file of that name wins and None is returned. With `durable`,
    the file and its name are synced to disk before this returns (a power loss keeps it).
    """
    final = directory / name
    tmp = directory / f".{name}.{os.getpid()}{TMP_SUFFIX}"
    pq.write_table(table, tmp, compression="zstd", use_dictionary=_dictionary_columns(table.schema))
    if durable:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if exclusive:
        try:
            os.link(tmp, final)
        except FileExistsError:
            return None
        finally:
            tmp.unlink(missing_ok=True)
    else:
        os.replace(tmp, final)
    if durable:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return final


@contextmanager
def file_lock(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold an flock on `path` for the block; yields False when non-blocking and it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(handle, flags)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def duckdb_message(error: BaseException) -> str:
    """DuckDB's error message without the echoed SQL (the part a user can act on)."""
    text = str(error).split("\n\nLINE ")[0].strip()
    return " ".join(text.split())


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as error:
        mode = "read" if read_only else "write"
        raise LogError(f"cannot {mode} event log {path}: {error}") from None


def _info(layout: LogLayout) -> tuple[int, str] | None:
    """(format_version, segments) recorded in LOG, or None when LOG has no such record."""
    connection = _connect(layout.path, read_only=True)
    try:
        tables = {row[0] for row in connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if INFO_TABLE not in tables:
            if tables:
                raise ForeignDatabaseError(
                    f"{layout.path} is a DuckDB file but not a botify event log (no {INFO_TABLE} table); choose another --log"
                )
            return None
        row = connection.execute(f"SELECT format_version, segments FROM {INFO_TABLE}").fetchone()
        return (int(row[0]), str(row[1])) if row else None
    finally:
        connection.close()


def _write_views(layout: LogLayout) -> None:
    connection = _connect(layout.path, read_only=False)
    try:
        connection.execute("BEGIN TRANSACTION")
        for table in TABLES:
            connection.execute(layout.view_sql(table))
        connection.execute(f"CREATE OR REPLACE TABLE {INFO_TABLE} (format_version INTEGER, segments VARCHAR)")
        connection.execute(f"INSERT INTO {INFO_TABLE} VALUES (?, ?)", [FORMAT_VERSION, str(layout.segments)])
        connection.execute("COMMIT")
    except duckdb.Error as error:  # a view binds its segments' schema: a corrupt segment fails here
        raise LogError(f"cannot write the views of event log {layout.path}: {duckdb_message(error)}") from None
    finally:
        connection.close()


def _remove_stale_tmp(directory: Path, older_than: float = 60.0) -> None:
    """Delete temporary files that a killed writer left behind (the views never read them)."""
    now = time.time()
    for tmp in directory.glob(f".*{TMP_SUFFIX}"):
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
        except FileNotFoundError:
            pass


def init_log(log: str | Path, *, reset: bool = False) -> LogLayout:
    """Create LOG and its segments directory, or check and repair an existing one.

    Idempotent and safe to call from several processes at once. LOG is only written when its
    views are missing or point elsewhere (the log was moved). The events that killed workers
    left in write-ahead files are sealed into segments (`contracts.eventlog.wal.recover`). With
    `reset`, every event and start record is deleted.
    """
    layout = LogLayout.of(log)
    bad = _GLOB_CHARACTERS.intersection(str(layout.segments))
    if bad:
        raise LogError(f"event log path {layout.path} contains {''.join(sorted(bad))!r}, which DuckDB would read as a pattern; choose another --log")
    if layout.path.is_dir():
        raise LogError(f"event log path {layout.path} is a directory; give a file path such as data/events.duckdb")
    created = not layout.segments.exists()
    try:
        layout.segments.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LogError(f"cannot create {layout.segments}: {error.strerror}") from None
    try:
        _init_locked(layout, reset)
    except ForeignDatabaseError:
        if created:  # leave no trace beside a database that is not ours
            shutil.rmtree(layout.segments, ignore_errors=True)
        raise
    return layout


def _init_locked(layout: LogLayout, reset: bool) -> None:
    """`init_log`'s work on an existing segments directory, under its init lock."""
    from contracts.eventlog.wal import WAL_SUFFIX, recover  # wal builds on this module

    with file_lock(layout.init_lock):
        layout.wal.mkdir(exist_ok=True)
        if reset:
            for wal in layout.wal.glob(f"*{WAL_SUFFIX}"):
                wal.unlink(missing_ok=True)
        for table, schema in arrow_schemas().items():
            directory = layout.directory(table)
            directory.mkdir(exist_ok=True)
            if reset:
                for segment in layout.segment_files(table):
                    if segment.name != TEMPLATE_NAME:
                        segment.unlink()
                for summary in [*directory.glob(f"*{SUMMARY_SUFFIX}"), *directory.glob(f"*{ROLLUP_SUFFIX}")]:  # `contracts.eventlog.summary`, `rollup`
                    summary.unlink()
            if not (directory / TEMPLATE_NAME).is_file():
                write_segment(directory, TEMPLATE_NAME, schema.empty_table())
            _remove_stale_tmp(directory)
        if not layout.path.exists() and not reset:
            adopted = sum(1 for table in arrow_schemas() for f in layout.segment_files(table) if f.name != TEMPLATE_NAME)
            if adopted:
                # By design a log is its segments (LOG only holds views), so a LOG deleted on its
                # own comes back with its events; say so, since that surprises whoever meant to start afresh.
                logger.warning(
                    "%s did not exist but %s holds %d segment(s) of events: they are part of this log again "
                    "(delete that directory too, or run `botify init-db --reset`, to start empty)",
                    layout.path, layout.segments, adopted,
                )
        recover(layout)
        info = _info(layout) if layout.path.exists() else None
        if info != (FORMAT_VERSION, str(layout.segments)):
            _write_views(layout)


def connect(log: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to LOG, as analysis opens it (usable while the service runs)."""
    path = Path(log)
    if not path.is_file():
        raise LogError(f"no event log at {path}: start the service (`botify serve --log {path}`) or run `botify init-db --log {path}`")
    return _connect(path, read_only=True)
