"""The event log: schema contract, LOG creation and repair, sealing segments, export, compact."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from botify.cli import main
from contracts.catalog import Catalog
from contracts.columns import (
    DUCKDB_TYPES,
    EVENTS_TABLE,
    EXPERIMENTS_DUCKDB_TYPES,
    EXPERIMENTS_TABLE,
    FORMAT_VERSION,
    WORLDS_DUCKDB_TYPES,
    WORLDS_TABLE,
    Columns,
    ExperimentColumns,
    WorldColumns,
    create_table_sql,
)
from contracts.eventlog import EventWriter, LogError, init_log
from contracts.eventlog.export import compact, export_parquet
from contracts.eventlog.layout import TEMPLATE_NAME, LogLayout, file_lock
from contracts.eventlog.wal import WAL_SUFFIX
from contracts.eventlog.writer import Row, record_start, world_row

DAY_US = 86_400_000_000
JAN_1_2024_US = 1_704_067_200_000_000


def describe(connection: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return {name: kind for name, kind, *_ in connection.execute(f"DESCRIBE {table}").fetchall()}


def row(user: int, ts_us: int = JAN_1_2024_US, message: str = "next") -> Row:
    recommendation = None if message == "last" else user + 1
    return (ts_us, user, None, message, user, 0.5, recommendation, "random", 0.001, (1, 0), 0.25, None, None, None)


def read(log: Path, sql: str = "SELECT * FROM events") -> list[tuple]:
    connection = duckdb.connect(str(log), read_only=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "events.duckdb"
    init_log(path)
    return path


@pytest.fixture
def writer(log: Path) -> EventWriter:
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=3600, flush_events=10**9)
    yield writer
    writer.close()


def test_the_declared_ddl_creates_every_table_with_its_declared_columns_in_order() -> None:
    connection = duckdb.connect()
    for table in (EVENTS_TABLE, EXPERIMENTS_TABLE, WORLDS_TABLE):
        connection.execute(create_table_sql(table))

    assert describe(connection, EVENTS_TABLE) == DUCKDB_TYPES
    assert list(DUCKDB_TYPES) == list(Columns.ALL)
    assert describe(connection, EXPERIMENTS_TABLE) == EXPERIMENTS_DUCKDB_TYPES
    assert list(EXPERIMENTS_DUCKDB_TYPES) == list(ExperimentColumns.ALL)
    assert describe(connection, WORLDS_TABLE) == WORLDS_DUCKDB_TYPES
    assert list(WORLDS_DUCKDB_TYPES) == list(WorldColumns.ALL)


def test_a_new_log_has_typed_empty_views(log: Path) -> None:
    connection = duckdb.connect(str(log), read_only=True)

    assert describe(connection, EVENTS_TABLE) == DUCKDB_TYPES
    assert describe(connection, EXPERIMENTS_TABLE) == EXPERIMENTS_DUCKDB_TYPES
    assert describe(connection, WORLDS_TABLE) == WORLDS_DUCKDB_TYPES
    assert connection.execute("SELECT count(*) FROM events").fetchone() == (0,)
    connection.close()


def test_sealed_segments_keep_the_types_and_values(log: Path, writer: EventWriter) -> None:
    writer.extend([row(1), row(2, message="last")])

    segment = writer.flush()

    assert segment is not None and segment.parent == LogLayout.of(log).directory(EVENTS_TABLE)
    connection = duckdb.connect(str(log), read_only=True)
    assert describe(connection, EVENTS_TABLE) == DUCKDB_TYPES
    rows = connection.execute('SELECT "user", message, recommendation, experiments, propensity, ts FROM events').fetchall()
    connection.close()
    assert [r[:5] for r in rows] == [(1, "next", 2, {"first": 1, "second": 0}, 0.25), (2, "last", None, {"first": 1, "second": 0}, 0.25)]
    assert rows[0][5].isoformat() == "2024-01-01T00:00:00"


def test_flush_with_nothing_buffered_writes_nothing(writer: EventWriter) -> None:
    assert writer.flush() is None


def test_the_thread_seals_every_window(log: Path) -> None:
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=0.05)
    writer.append(row(1))

    deadline = time.monotonic() + 10
    while not read(log) and time.monotonic() < deadline:
        time.sleep(0.02)

    assert len(read(log)) == 1 and writer.pending() == 0
    writer.close()


def test_a_seal_that_fails_in_the_thread_is_logged_and_retried_next_window(log: Path, caplog: pytest.LogCaptureFixture) -> None:
    layout = LogLayout.of(log)
    events = layout.directory(EVENTS_TABLE)
    writer = EventWriter(layout, ["first", "second"], flush_window=0.05)
    aside = _unusable(events)
    writer.append(row(1))

    deadline = time.monotonic() + 10
    while not [r for r in caplog.records if r.levelname == "ERROR"] and time.monotonic() < deadline:
        time.sleep(0.02)
    _usable_again(events, aside)
    while writer.pending() and time.monotonic() < deadline + 10:
        time.sleep(0.02)

    errors = {r.getMessage() for r in caplog.records if r.levelname == "ERROR"}
    assert errors == {f"event log: sealing a segment in {events} failed; retrying next window"}
    assert [r[1] for r in read(log)] == [1] and writer.pending() == 0
    writer.close()


class _WokenJustAfterATimeout(threading.Event):
    """The writer's wake-up event, where a wake (a buffer just filled) lands right after a wait
    timed out, once `armed`: the moment a thread that clears the event after every wait loses it."""

    armed = raced = False

    def wait(self, timeout: float | None = None) -> bool:
        woken = super().wait(timeout)
        if not woken and self.armed and not self.raced:
            self.raced = True
            self.set()
        return woken


def test_a_wake_that_lands_just_after_a_sync_tick_is_not_lost(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The thread wakes every 50 ms to sync; a wake that lands between a wait's timeout and the
    # thread's next step must still seal the buffer, not wait for the hour's window.
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=3600, fsync_window=0.05)
    wake = _WokenJustAfterATimeout()
    monkeypatch.setattr(writer, "_wake", wake)
    writer.extend([row(0), row(1)])
    wake.armed = True

    deadline = time.monotonic() + 10
    while writer.pending() and time.monotonic() < deadline:
        time.sleep(0.02)

    assert wake.raced and writer.pending() == 0 and writer.sealed_events == 2
    writer.close()


def test_syncs_between_windows_seal_nothing(log: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The thread wakes every 50 ms to sync, and seals only when a buffer fills (2 rows) or the
    # hour's window ends: before the first seal and after one, a lone row stays buffered.
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=3600, flush_events=2, fsync_window=0.05)
    writer.append(row(0))
    time.sleep(0.3)
    assert writer.pending() == 1
    writer.append(row(1))
    deadline = time.monotonic() + 10
    while writer.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer.sealed_events == 2

    writer.append(row(2))
    time.sleep(0.3)

    assert writer.pending() == 1 and writer.sealed_segments == 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    writer.close()


def test_a_full_buffer_seals_before_the_window(log: Path) -> None:
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=3600, flush_events=3)
    writer.extend([row(u) for u in range(3)])

    deadline = time.monotonic() + 10
    while writer.sealed_events < 3 and time.monotonic() < deadline:
        time.sleep(0.02)

    assert writer.sealed_events == 3
    writer.close()


def test_each_full_buffer_becomes_durable_before_the_window_and_only_full_ones(log: Path) -> None:
    # Windows of an hour: the thread wakes only when a buffer fills. Two rows stay buffered; the
    # third fills the buffer again, and the five rows make exactly two segments.
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=3600, flush_events=3, fsync_window=3600)
    writer.extend([row(u) for u in range(3)])
    deadline = time.monotonic() + 30
    while len(read(log)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(r[1] for r in read(log)) == [0, 1, 2] and writer.pending() == 0

    writer.extend([row(3), row(4)])
    time.sleep(0.2)  # room for a thread that wrongly seals a buffer short of full
    assert writer.pending() == 2
    writer.append(row(5))
    deadline = time.monotonic() + 30
    while len(read(log)) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)

    assert sorted(r[1] for r in read(log)) == list(range(6))
    assert writer.sealed_segments == 2 and writer.pending() == 0
    writer.close()


def test_close_waits_for_the_thread_and_leaves_every_row_durable(log: Path) -> None:
    # The thread is held in a sync when close is called: close must wait for it to end, so that
    # no thread of a closed writer still touches the log, and must seal every row.
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=3600, fsync_window=0.01)
    syncing = threading.Event()
    sync = writer.sync

    def slow_sync() -> None:
        syncing.set()
        time.sleep(0.5)
        sync()

    writer.sync = slow_sync  # type: ignore[method-assign]
    writer.extend([row(u) for u in range(4)])
    assert syncing.wait(30)
    thread = writer._thread

    writer.close()

    assert thread is not None and not thread.is_alive()
    assert sorted(r[1] for r in read(log)) == [0, 1, 2, 3]
    assert writer.pending() == 0 and not list(LogLayout.of(log).wal.glob("*"))


def test_close_seals_the_rest_and_is_idempotent(log: Path) -> None:
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=3600)
    writer.extend([row(u) for u in range(5)])

    writer.close()
    writer.close()

    assert len(read(log)) == 5


def _unusable(directory: Path) -> Path:
    """Put a plain file where `directory` was (a seal into it fails); returns where it went."""
    aside = directory.with_name(directory.name + ".aside")
    directory.rename(aside)
    directory.write_text("not a directory")
    return aside


def _usable_again(directory: Path, aside: Path) -> None:
    directory.unlink()
    aside.rename(directory)


def test_a_seal_is_synced_before_its_write_ahead_file_is_deleted(log: Path, writer: EventWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    # A power loss keeps what was synced: the segment's file and its name in the directory must
    # reach the disk before the write-ahead file, the only other copy of its rows, goes.
    layout = LogLayout.of(log)
    writer.extend([row(u) for u in range(3)])
    steps: list[tuple[str, Path]] = []
    real_fsync, real_unlink = os.fsync, os.unlink
    monkeypatch.setattr(os, "fsync", lambda fd: (steps.append(("sync", Path(os.readlink(f"/proc/self/fd/{fd}")))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "unlink", lambda path, **kw: (steps.append(("delete", Path(path))), real_unlink(path, **kw))[1])

    segment = writer.flush()

    assert segment is not None and sorted(r[1] for r in read(log)) == [0, 1, 2]
    (wal_deleted,) = [i for i, (step, path) in enumerate(steps) if step == "delete" and path.parent == layout.wal]
    synced = [path for step, path in steps[:wal_deleted] if step == "sync"]
    assert layout.directory(EVENTS_TABLE) in synced  # the segment's name
    assert any(path.parent == segment.parent and segment.stem in path.name for path in synced)  # its rows


def test_a_last_seal_that_fails_says_where_its_events_wait(log: Path, caplog: pytest.LogCaptureFixture) -> None:
    layout = LogLayout.of(log)
    writer = EventWriter(layout, ["first", "second"], flush_window=3600)
    writer.extend([row(u) for u in range(3)])
    events = layout.directory(EVENTS_TABLE)
    aside = _unusable(events)

    writer.close()

    _usable_again(events, aside)
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == (
        f"event log: sealing the last segment in {events} failed; its 3 events stay in {layout.wal} and are sealed at the next start"
    )
    assert writer.pending() == 3 and len(list(layout.wal.glob("*"))) == 1 and read(log) == []


def _append_and_die(log: Path, users: tuple[int, ...]) -> None:
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=3600)
    writer.extend([row(u) for u in users])
    os._exit(0)  # dies without sealing: its write-ahead file is left to the others


def test_a_recovery_that_fails_at_close_says_so_and_the_next_start_seals_its_events(log: Path, caplog: pytest.LogCaptureFixture) -> None:
    layout = LogLayout.of(log)
    events = layout.directory(EVENTS_TABLE)
    aside = _unusable(events)
    _died_leaving(log, 7, 8)
    writer = EventWriter(layout, ["first", "second"], flush_window=3600)  # appends nothing: no thread

    writer.close()

    _usable_again(events, aside)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [f"event log: recovering the write-ahead files in {layout.wal} failed"]
    init_log(log)
    assert sorted(r[1] for r in read(log)) == [7, 8]


def test_a_process_that_ends_without_close_seals_its_events_at_exit(log: Path) -> None:
    # close runs at interpreter exit; the writer's thread must not hold the exit up (a
    # non-daemon thread would keep the process alive before the exit handlers run).
    code = (
        "from contracts.eventlog import EventWriter; from contracts.eventlog.layout import LogLayout; "
        f"EventWriter(LogLayout.of({str(log)!r}), ['first', 'second'], flush_window=3600).append({row(5)!r})"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], timeout=60, capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    assert [r[1] for r in read(log)] == [5]


def test_with_fsync_window_0_a_write_and_a_new_files_name_are_synced_before_append_returns(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = LogLayout.of(log)
    writer = EventWriter(layout, ["first", "second"], flush_window=3600, fsync_window=0)
    synced: list[Path] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(Path(os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1])

    writer.append(row(1))
    (wal,) = layout.wal.glob(f"*{WAL_SUFFIX}")
    assert wal in synced and layout.wal in synced
    synced.clear()
    writer.append(row(2))
    assert synced == [wal]  # the file again, its name not

    umask = os.umask(0)
    os.umask(umask)
    assert wal.stat().st_mode & 0o777 == 0o644 & ~umask
    monkeypatch.undo()
    writer.close()


def test_a_write_ahead_file_that_cannot_be_created_raises_and_leaves_nothing(log: Path, writer: EventWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = LogLayout.of(log)

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", full_disk)
    with pytest.raises(OSError, match="No space left"):
        writer.append(row(1))
    assert list(layout.wal.iterdir()) == [] and writer.pending() == 0
    monkeypatch.undo()

    writer.append(row(2))
    writer.flush()
    assert [r[1] for r in read(log)] == [2]


def test_a_write_ahead_write_that_fails_leaves_the_file_as_it_was(log: Path, writer: EventWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    # A full disk part-way through a record (a short write, then ENOSPC: one write(2) either
    # writes some bytes or fails having written none): the part written is cut off again, so
    # that no torn record sits before later ones, and nothing of the batch is buffered.
    writer.append(row(1))
    (wal,) = LogLayout.of(log).wal.glob(f"*{WAL_SUFFIX}")
    size = wal.stat().st_size
    real_write = os.write
    calls = []

    def half_then_full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real_write(fd, bytes(data[:5]))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        writer.extend([row(2), row(3)])
    monkeypatch.undo()

    assert wal.stat().st_size == size and writer.pending() == 1
    writer.append(row(4))
    writer.flush()
    assert sorted(r[1] for r in read(log)) == [1, 4]


def _died_leaving(log: Path, *users: int) -> None:
    dead = multiprocessing.get_context("fork").Process(target=_append_and_die, args=(log, users))
    dead.start()
    dead.join(20)


def test_a_starting_writer_seals_what_a_dead_one_left(log: Path) -> None:
    # A respawned worker's thread recovers its dead predecessor's file when it starts, not only at close.
    _died_leaving(log, 7, 8)
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=3600)
    writer.append(row(1))

    deadline = time.monotonic() + 10
    while len(read(log)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)

    assert sorted(r[1] for r in read(log)) == [7, 8] and writer.pending() == 1
    writer.close()


def test_a_starting_writer_whose_recovery_fails_says_so_and_keeps_writing(log: Path, caplog: pytest.LogCaptureFixture) -> None:
    layout = LogLayout.of(log)
    events = layout.directory(EVENTS_TABLE)
    aside = _unusable(events)
    _died_leaving(log, 7, 8)
    writer = EventWriter(layout, ["first", "second"], flush_window=3600)
    writer.append(row(1))

    deadline = time.monotonic() + 10
    while not [r for r in caplog.records if r.levelname == "ERROR"] and time.monotonic() < deadline:
        time.sleep(0.02)
    _usable_again(events, aside)

    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [f"event log: recovering the write-ahead files in {layout.wal} failed"]
    writer.append(row(2))
    writer.close()
    assert sorted(r[1] for r in read(log)) == [1, 2, 7, 8]


def test_a_world_row_names_the_catalogs_world(small_world_dir: Path) -> None:
    catalog = Catalog(small_world_dir)

    assert world_row(catalog) == {
        WorldColumns.FINGERPRINT: catalog.fingerprint,
        WorldColumns.PATH: str(small_world_dir.absolute()),
        WorldColumns.TRACKS: 3000,
    }


def _child_appends(writer: EventWriter) -> None:
    writer.append(row(100))
    writer.close()


def test_a_forked_child_writes_its_own_rows_only(log: Path, writer: EventWriter) -> None:
    writer.append(row(1))
    child = multiprocessing.get_context("fork").Process(target=_child_appends, args=(writer,))

    child.start()
    child.join(20)

    assert child.exitcode == 0
    assert [r[1] for r in read(log)] == [100]
    writer.flush()
    assert sorted(r[1] for r in read(log)) == [1, 100]


def _child_of_a_sealing_writer(writer: EventWriter, report: Connection) -> None:
    # What the child holds of the parent's write-ahead files, and whether its own thread seals
    # its row within a window; it then dies without closing.
    parents = [name for fd in os.listdir("/proc/self/fd") if (name := os.path.realpath(f"/proc/self/fd/{fd}")).endswith(WAL_SUFFIX)]
    writer.append(row(100))
    deadline = time.monotonic() + 10
    while writer.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    report.send((parents, writer.pending()))
    os._exit(0)


@pytest.mark.parametrize("parent_file", [True, False], ids=["open", "sealed"])
def test_a_forked_child_drops_the_parents_file_and_seals_with_its_own_thread(log: Path, parent_file: bool) -> None:
    # Forked while the parent's write-ahead file is open, or after the parent's thread sealed it.
    writer = EventWriter(LogLayout.of(log), ["first", "second"], flush_window=0.05)
    writer.append(row(1))
    deadline = time.monotonic() + 10
    while not parent_file and writer.sealed_events < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_child_of_a_sealing_writer, args=(writer, send))
    child.start()
    assert receive.poll(30)
    held, pending = receive.recv()
    child.join(10)
    writer.close()

    assert held == [] and pending == 0
    assert sorted(r[1] for r in read(log)) == [1, 100]


def test_init_is_idempotent_and_leaves_log_alone(log: Path) -> None:
    before = log.stat().st_mtime_ns

    init_log(log)

    assert log.stat().st_mtime_ns == before


def test_a_moved_log_is_repointed(log: Path, writer: EventWriter, tmp_path: Path) -> None:
    writer.append(row(1))
    writer.flush()
    moved = tmp_path / "moved"
    (tmp_path / "data").rename(moved)

    init_log(moved / "events.duckdb")

    assert len(read(moved / "events.duckdb")) == 1


def test_a_deleted_log_file_gets_its_segments_back_and_says_so(log: Path, writer: EventWriter, caplog: pytest.LogCaptureFixture) -> None:
    writer.append(row(1))
    writer.flush()
    log.unlink()  # what someone meaning to start afresh might do

    with caplog.at_level("WARNING", logger="contracts.eventlog.layout"):
        init_log(log)

    assert len(read(log)) == 1
    assert "init-db --reset" in caplog.text and str(LogLayout.of(log).segments) in caplog.text


def test_a_new_log_over_an_empty_segments_directory_warns_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "events.duckdb"
    init_log(path)
    path.unlink()

    with caplog.at_level("WARNING", logger="contracts.eventlog.layout"):
        init_log(path)

    assert caplog.text == ""


def test_reset_deletes_events_but_keeps_the_log(log: Path, writer: EventWriter) -> None:
    writer.append(row(1))
    writer.flush()

    init_log(log, reset=True)

    assert read(log) == []
    assert (LogLayout.of(log).directory(EVENTS_TABLE) / TEMPLATE_NAME).is_file()


def test_an_unrelated_duckdb_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute("CREATE TABLE sales (x INTEGER)")
    connection.close()

    with pytest.raises(LogError, match="not a botify event log"):
        init_log(path)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="is a directory"):
        init_log(tmp_path)


def test_half_written_segments_are_invisible_and_stale_ones_removed(log: Path) -> None:
    directory = LogLayout.of(log).directory(EVENTS_TABLE)
    stale = directory / ".123-1-000001.parquet.99.tmp"
    stale.write_bytes(b"PAR1 half a file")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))

    assert read(log) == []
    init_log(log)
    assert not stale.exists()


def test_start_records_are_written_once_per_start(log: Path) -> None:
    layout = LogLayout.of(log)
    rows = [{"experiment": "e", "treatment": i, "recommender": r, "serving": True} for i, r in enumerate(["random", "sticky_artist"])]

    world = {"fingerprint": "0123456789abcdef", "path": "/worlds/a", "tracks": 50}

    assert record_start(layout, rows, JAN_1_2024_US, world) is not None
    # Another worker of the same start, from another path: the first record stays.
    assert record_start(layout, rows, JAN_1_2024_US, {**world, "path": "/worlds/b"}) is None

    jan_1 = read(log, "SELECT TIMESTAMP '2024-01-01'")[0][0]
    assert read(log, "SELECT experiment, treatment, recommender, serving, started FROM experiments ORDER BY treatment") == [
        ("e", 0, "random", True, jan_1),
        ("e", 1, "sticky_artist", True, jan_1),
    ]
    assert read(log, "SELECT started, fingerprint, path, tracks FROM worlds") == [(jan_1, "0123456789abcdef", "/worlds/a", 50)]


def test_a_log_of_the_previous_format_gains_the_worlds_view(log: Path) -> None:
    """Format 1 logs had no `worlds`: the next init (any service start) adds it, keeping the events."""
    connection = duckdb.connect(str(log))
    connection.execute("DROP VIEW worlds")
    connection.execute("UPDATE log_info SET format_version = 1")
    connection.close()

    init_log(log)

    assert read(log, "SELECT count(*) FROM worlds") == [(0,)]
    assert read(log, "SELECT format_version FROM log_info") == [(FORMAT_VERSION,)]


def test_export_writes_parquet_partitioned_by_date(log: Path, writer: EventWriter, tmp_path: Path) -> None:
    writer.extend([row(1), row(2, JAN_1_2024_US + DAY_US), row(3, JAN_1_2024_US + DAY_US)])
    writer.flush()
    out = tmp_path / "export"

    counts = export_parquet(log, out)

    assert counts == {EVENTS_TABLE: 3, EXPERIMENTS_TABLE: 0, WORLDS_TABLE: 0}
    assert (out / "experiments.parquet").is_file() and (out / "worlds.parquet").is_file()
    assert sorted(p.name for p in (out / EVENTS_TABLE).iterdir()) == ["date=2024-01-01", "date=2024-01-02"]
    exported = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{out}/events/*/*.parquet', hive_partitioning = true)").fetchone()
    assert exported == (3,)
    with pytest.raises(LogError, match="not empty"):
        export_parquet(log, out)


def test_an_export_reads_like_the_log(log: Path, writer: EventWriter, tmp_path: Path) -> None:
    """Training and abtest take an export directory for the log: same events, split and world."""
    from abtest.log import EventLog
    from recommenders.dataset import Dataset, logged_worlds

    rows = [{"experiment": "first", "treatment": i, "recommender": "random", "serving": True} for i in range(2)]
    record_start(LogLayout.of(log), rows, JAN_1_2024_US, {"fingerprint": "f" * 16, "path": "/w", "tracks": 9})
    writer.extend([row(1), row(2, JAN_1_2024_US + DAY_US, message="last")])
    writer.flush()
    out = tmp_path / "export"
    export_parquet(log, out)

    assert len(Dataset.from_log(out)) == len(Dataset.from_log(log)) == 2
    assert logged_worlds(out) == logged_worlds(log) == [("f" * 16, "/w")]
    with EventLog.open(out) as exported, EventLog.open(log) as original:
        assert exported.declared() == original.declared() and len(exported.declared()) == 2
        count = "SELECT count(*) FROM events"
        assert exported.con.execute(count).fetchone() == original.con.execute(count).fetchone() == (2,)


def test_compact_merges_segments_without_losing_rows(log: Path, writer: EventWriter) -> None:
    for user in range(3):
        writer.append(row(user))
        writer.flush()

    assert compact(log) == (3, 3)

    layout = LogLayout.of(log)
    assert len(layout.segment_files(EVENTS_TABLE)) == 2  # the template and the merged segment
    assert sorted(r[1] for r in read(log)) == [0, 1, 2]


def test_compact_refuses_while_a_service_serves(log: Path) -> None:
    with file_lock(LogLayout.of(log).serving_lock, shared=True), pytest.raises(LogError, match="stop it before compacting"):
        compact(log)


def test_cli_init_db_export_and_compact(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "cli" / "events.duckdb"

    created = runner.invoke(main, ["init-db", "--log", str(path)])
    exported = runner.invoke(main, ["export", "--log", str(path), "--format", "parquet", "--out", str(tmp_path / "out")])
    compacted = runner.invoke(main, ["compact", "--log", str(path)])
    reset = runner.invoke(main, ["init-db", "--log", str(path), "--reset"], input="n\n")

    assert created.exit_code == 0 and "Initialized the event log" in created.output
    assert exported.exit_code == 0 and "Exported 0 events" in exported.output
    assert compacted.exit_code == 0 and "Compacted 0 segments" in compacted.output
    assert reset.exit_code == 1 and "Aborted" in reset.output


def test_cli_export_of_a_missing_log_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "--log", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "out")])

    assert result.exit_code == 1
    assert "no event log at" in result.output and "botify serve --log" in result.output


@pytest.mark.parametrize("keep", [0.5, 0.0], ids=["truncated", "empty"])
def test_a_damaged_segment_is_one_line_naming_it_for_export_compact_and_init_db(
    log: Path, writer: EventWriter, tmp_path: Path, keep: float
) -> None:
    for user in (1, 2):  # two segments, so that compact has something to merge
        writer.append(row(user))
        writer.flush()
    segment = next(s for s in LogLayout.of(log).segment_files(EVENTS_TABLE) if s.name != TEMPLATE_NAME)
    damaged = segment.read_bytes()[: int(segment.stat().st_size * keep)]
    segment.write_bytes(damaged)
    runner = CliRunner()

    results = {
        "export": runner.invoke(main, ["export", "--log", str(log), "--out", str(tmp_path / "out")]),
        "compact": runner.invoke(main, ["compact", "--log", str(log)]),
    }
    (tmp_path / "data").rename(tmp_path / "moved")  # a moved log's views are rewritten, and a view reads every segment
    results["init-db"] = runner.invoke(main, ["init-db", "--log", str(tmp_path / "moved" / "events.duckdb")])

    for command, result in results.items():
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, (command, result.output)
        assert lines[0].startswith("Error: ") and segment.name in lines[0], (command, result.output)
    assert (tmp_path / "moved" / segment.relative_to(tmp_path / "data")).read_bytes() == damaged  # compact removed nothing
