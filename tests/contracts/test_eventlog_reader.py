"""`event_files`: the Parquet files behind a log's `events`, whatever the log's form, or None for a database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from contracts.columns import EVENTS_TABLE, create_table_sql
from contracts.eventlog import init_log
from contracts.eventlog.export import export_parquet
from contracts.eventlog.reader import event_files, open_log


def write_events(path: Path, users: range) -> None:
    """A Parquet file of one event per user, with the declared columns."""
    con = duckdb.connect()
    con.execute(create_table_sql(EVENTS_TABLE))
    for user in users:
        con.execute(f"INSERT INTO {EVENTS_TABLE} (ts, \"user\", message) VALUES (?, ?, 'next')", [dt.datetime(2026, 1, 1, 0, user), user])
    con.execute(f"COPY {EVENTS_TABLE} TO '{path}' (FORMAT parquet)")
    con.close()


def users_of(files: list[Path]) -> list[int]:
    listing = ", ".join(f"'{f}'" for f in files)
    return sorted(row[0] for row in duckdb.execute(f"SELECT \"user\" FROM read_parquet([{listing}], union_by_name = true)").fetchall())


def users_of_log(path: Path | str) -> list[int]:
    con = open_log(path)
    try:
        return sorted(row[0] for row in con.execute(f"SELECT \"user\" FROM {EVENTS_TABLE}").fetchall())
    finally:
        con.close()


@pytest.fixture()
def log(tmp_path: Path) -> Path:
    """A LOG of views over two sealed segments, as botify writes one."""
    path = tmp_path / "events.duckdb"
    layout = init_log(path)
    write_events(layout.directory(EVENTS_TABLE) / "0000000000000000001-a.parquet", range(0, 3))
    write_events(layout.directory(EVENTS_TABLE) / "0000000000000000002-a.parquet", range(3, 5))
    return path


def test_the_files_of_every_form_of_a_log_hold_its_events(log: Path, tmp_path: Path) -> None:
    export_parquet(log, tmp_path / "export")
    single = tmp_path / "single.parquet"
    write_events(single, range(7))
    forms = [log, log.with_name("events.segments"), tmp_path / "export", single, str(log.with_name("events.segments") / "events" / "*.parquet")]

    for form in forms:
        files = event_files(form)
        assert files is not None and all(Path(f).suffix == ".parquet" for f in files), form
        assert users_of(files) == users_of_log(form), form
    assert users_of_log(log) == list(range(5))


def test_a_database_of_events_has_no_files(tmp_path: Path) -> None:
    path = tmp_path / "table.duckdb"
    con = duckdb.connect(str(path))
    con.execute(create_table_sql(EVENTS_TABLE))
    con.close()

    assert event_files(path) is None
