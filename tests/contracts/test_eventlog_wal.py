"""The event writer's promise, "an answered event is never lost nor logged twice": write-ahead
files, their recovery after a crash, failed seals and concurrent flushes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from contracts.columns import Columns
from contracts.eventlog import EventWriter, init_log
from contracts.eventlog import writer as writer_module
from contracts.eventlog.layout import LogLayout
from contracts.eventlog.wal import WAL_SUFFIX, decode, encode_record, recover
from contracts.eventlog.writer import Row, make_row

TS = 1_704_067_200_000_000  # 2024-01-01 in epoch microseconds


def row(user: int) -> Row:
    return make_row(
        {
            Columns.TS: TS + user,
            Columns.USER: user,
            Columns.SESSION: None,
            Columns.MESSAGE: "next",
            Columns.TRACK: user % 97,
            Columns.TIME: 0.5,
            Columns.RECOMMENDATION: user + 1,
            Columns.RECOMMENDER: "random",
            Columns.LATENCY: 0.001,
            Columns.EXPERIMENTS: (1, 0),
            Columns.PROPENSITY: 0.25,
        }
    )


def users(log: Path) -> Counter:
    connection = duckdb.connect(str(log), read_only=True)
    try:
        return Counter(u for (u,) in connection.execute('SELECT "user" FROM events').fetchall())
    finally:
        connection.close()


def wal_files(log: Path) -> list[Path]:
    return sorted(LogLayout.of(log).wal.glob(f"*{WAL_SUFFIX}"))


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "events.duckdb"
    init_log(path)
    return path


def new_writer(log: Path, **options: float) -> EventWriter:
    settings = {"flush_window": 3600.0, "flush_events": 10**9, **options}
    return EventWriter(LogLayout.of(log), ["first", "second"], **settings)  # type: ignore[arg-type]


def test_make_row_follows_the_declared_columns() -> None:
    values = {name: index for index, name in enumerate(Columns.ALL)}

    assert make_row(values) == tuple(range(len(Columns.ALL)))
    with pytest.raises(KeyError):
        make_row({Columns.TS: 1})


def test_a_record_round_trips_and_a_torn_tail_drops_only_itself() -> None:
    header = encode_record({"format": 1, "columns": ["a"], "experiments": []})
    first, second = encode_record([[1], [2]]), encode_record([[3]])
    whole = header + first + second

    assert decode(whole).rows == [[1], [2], [3]] and decode(whole).dropped == 0
    for cut in range(1, len(second)):  # a crash anywhere inside the last write
        decoded = decode(whole[: len(whole) - cut])
        assert decoded.rows == [[1], [2]], cut
        assert decoded.dropped == len(second) - cut
    garbled = whole[:-1] + bytes([whole[-1] ^ 0xFF])  # power loss: the right length, wrong bytes
    assert decode(garbled).rows == [[1], [2]]


def test_a_garbled_record_in_the_middle_loses_only_itself_and_a_zero_tail_is_a_torn_write() -> None:
    header = encode_record({"format": 1, "columns": ["a"], "experiments": []})
    first, second, third = encode_record([[1]]), encode_record([[2], [3]]), encode_record([[4]])
    garbled = bytearray(second)
    garbled[-2] ^= 0xFF  # a disk fault inside the record: its length is intact, its bytes are not

    decoded = decode(header + first + bytes(garbled) + third)
    assert decoded.rows == [[1], [4]] and decoded.corrupt == 1 and decoded.dropped == 0

    zero_tail = decode(header + first + bytes(4096))  # a file extended by a power loss, never written
    assert zero_tail.rows == [[1]] and zero_tail.corrupt == 0 and zero_tail.dropped == 4096


def test_recovery_keeps_the_records_after_a_garbled_one_and_keeps_the_file_aside(log: Path) -> None:
    layout = LogLayout.of(log)
    wal = layout.wal / f"0000000000000000001-1-000001{WAL_SUFFIX}"
    header = encode_record({"format": 1, "columns": list(Columns.ALL), "experiments": ["first", "second"]})
    records = [encode_record([list(row(user))]) for user in range(5)]
    garbled = bytearray(records[2])
    garbled[-3] ^= 0xFF
    records[2] = bytes(garbled)
    wal.write_bytes(header + b"".join(records))

    assert recover(layout) == 4
    init_log(log)
    assert users(log) == Counter({0: 1, 1: 1, 3: 1, 4: 1})
    assert wal_files(log) == [] and wal.with_name(wal.name + ".corrupt").is_file()


def test_an_appended_event_is_in_the_write_ahead_file_before_any_seal(log: Path) -> None:
    writer = new_writer(log)

    writer.extend([row(1), row(2)])
    writer.append(row(3))

    (wal,) = wal_files(log)
    decoded = decode(wal.read_bytes())
    assert decoded.header["columns"] == list(Columns.ALL) and decoded.header["experiments"] == ["first", "second"]
    assert [r[1] for r in decoded.rows] == [1, 2, 3]
    assert users(log) == Counter()
    writer.close()
    assert users(log) == Counter({1: 1, 2: 1, 3: 1}) and wal_files(log) == []


def _append_and_die(log: Path, n: int, ready: multiprocessing.synchronize.Event) -> None:
    writer = new_writer(log)
    writer.extend([row(u) for u in range(n)])
    writer.append(row(n))
    ready.set()
    signal.pause()  # killed here, with everything buffered and nothing sealed


def test_events_of_a_killed_process_are_recovered_once_at_the_next_init(log: Path) -> None:
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=_append_and_die, args=(log, 500, ready))
    child.start()
    assert ready.wait(30)
    assert recover(LogLayout.of(log)) == 0  # a live writer's file is not touched
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)

    init_log(log)
    init_log(log)  # a second recovery finds nothing more

    assert users(log) == Counter(range(501))
    assert wal_files(log) == []


def test_a_file_sealed_but_not_yet_deleted_is_not_sealed_twice(log: Path) -> None:
    writer = new_writer(log)
    writer.extend([row(1), row(2)])
    (wal,) = wal_files(log)
    kept = wal.read_bytes()
    writer.close()  # seals and deletes the file
    wal.write_bytes(kept)  # as if the process died between the seal and the delete

    assert recover(LogLayout.of(log)) == 0
    assert users(log) == Counter({1: 1, 2: 1}) and wal_files(log) == []


def test_a_recovered_torn_file_keeps_every_complete_record(log: Path) -> None:
    writer = new_writer(log)
    writer.extend([row(1), row(2)])
    writer.extend([row(3)])
    (wal,) = wal_files(log)
    # The writer's file, cut short, as a dead worker's file appears: whole and at once (the
    # writer's thread recovers at its start, and may do so at any moment on a loaded machine).
    dead = wal.with_name(f"0000000000000000001-1-000001{WAL_SUFFIX}")
    staging = wal.with_name("torn.tmp")
    staging.write_bytes(wal.read_bytes()[:-3])
    os.replace(staging, dead)
    wal.unlink()  # still locked by the writer until its descriptor closes: nobody seals it
    os.close(writer._current.fd)
    writer._current = None

    recover(LogLayout.of(log))

    assert users(log) == Counter({1: 1, 2: 1})
    writer.close()


def test_sync_syncs_written_rows_once_and_a_new_files_name_once(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Windows of an hour: only the test calls sync. A power loss keeps what was synced, so a sync
    # after a write must sync the file, a sync with nothing new must not, and the directory
    # (the file's name) is synced once per file.
    writer = new_writer(log, fsync_window=3600.0)
    synced: list[int] = []
    directories: list[Path] = []
    real_fsync = os.fsync
    monkeypatch.setattr(writer_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(writer_module, "fsync_directory", directories.append)

    writer.extend([row(0), row(1)])
    fd = writer._current.fd  # type: ignore[union-attr]
    writer.sync()
    assert synced.count(fd) == 1 and directories == [LogLayout.of(log).wal]
    writer.sync()
    assert synced.count(fd) == 1
    writer.append(row(2))
    writer.sync()

    assert synced.count(fd) == 2 and directories == [LogLayout.of(log).wal]
    writer.close()


def test_a_failed_seal_keeps_its_rows_and_the_next_flush_seals_them(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = new_writer(log)
    writer.extend([row(u) for u in range(10)])
    real = writer_module.write_segment
    calls = []

    def full_disk(*args: object, **kwargs: object) -> Path | None:
        calls.append(args)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(writer_module, "write_segment", full_disk)

    with pytest.raises(OSError, match="No space left"):
        writer.flush()
    assert writer.pending() == 10 and writer.sealed_events == 0
    writer.extend([row(u) for u in range(10, 15)])
    writer.flush()

    assert users(log) == Counter(range(15))
    assert writer.pending() == 0 and writer.sealed_events == 15 and wal_files(log) == []
    writer.close()


def test_concurrent_appends_and_flushes_lose_and_duplicate_nothing(log: Path) -> None:
    writer = new_writer(log)
    threads, per_thread = 4, 1500
    done = threading.Event()
    counts: list[tuple[int, int]] = []

    def append(base: int) -> None:
        for i in range(per_thread):
            if i % 3 == 0:
                writer.extend([row(base + i)])
            else:
                writer.append(row(base + i))

    def flush() -> None:
        while not done.is_set():
            writer.flush()
            sealed, pending = writer.sealed_events, writer.pending()
            counts.append((sealed, pending))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        flusher = threading.Thread(target=flush)
        flusher.start()
        appenders = [threading.Thread(target=append, args=(t * per_thread,)) for t in range(threads)]
        for thread in appenders:
            thread.start()
        for thread in appenders:
            thread.join(60)
        done.set()
        flusher.join(60)
    finally:
        sys.setswitchinterval(interval)

    appended = threads * per_thread
    assert writer.sealed_events + writer.pending() == appended
    assert all(sealed + pending <= appended for sealed, pending in counts)
    assert len(counts) > 10  # the flusher really ran alongside
    writer.close()
    assert users(log) == Counter(range(appended))


def test_a_flush_during_an_append_seals_the_appended_rows_exactly_once(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = new_writer(log)
    writer.append(row(0))  # the file exists: the next append only writes a record
    inside, release = threading.Event(), threading.Event()
    real = writer_module._write_all

    def slow_write(fd: int, data: bytes) -> None:
        real(fd, data)
        if threading.current_thread().name == "appender":
            inside.set()
            release.wait(30)  # the appender is held between its write and its buffering

    monkeypatch.setattr(writer_module, "_write_all", slow_write)
    appender = threading.Thread(target=writer.extend, args=([row(1), row(2)],), name="appender")
    appender.start()
    assert inside.wait(30)
    flusher = threading.Thread(target=writer.flush)
    flusher.start()
    flusher.join(0.3)  # a flush that does not wait for the append would seal around it here
    release.set()
    appender.join(30)
    flusher.join(30)
    writer.flush()

    assert users(log) == Counter({0: 1, 1: 1, 2: 1})
    assert writer.sealed_events == 3 and writer.pending() == 0
    writer.close()


class _FlushWhenLetGo:
    """Stands in for the writer's buffer lock: the first time the thread named 'appender' lets it
    go, a whole flush runs in another thread before the appender takes another step."""

    def __init__(self, writer: EventWriter) -> None:
        self.inner, self.writer, self.flushed = threading.Lock(), writer, False

    def __enter__(self) -> None:
        self.inner.acquire()

    def __exit__(self, *exc: object) -> None:
        self.inner.release()
        if not self.flushed and threading.current_thread().name == "appender":
            self.flushed = True
            flusher = threading.Thread(target=self.writer.flush)
            flusher.start()
            flusher.join(30)


def test_an_append_buffers_its_rows_before_a_flush_can_slip_in(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The rows must be buffered while the append holds the buffer's lock: a flush that slips in
    # the moment the lock is let go then seals them. A writer that buffers them after letting go
    # would see that flush seal and delete the write-ahead file without them: lost.
    writer = new_writer(log)
    writer.append(row(0))  # the file exists: the next append only writes a record
    monkeypatch.setattr(writer, "_lock", _FlushWhenLetGo(writer))
    appender = threading.Thread(target=writer.extend, args=([row(1), row(2)],), name="appender")
    appender.start()
    appender.join(30)
    writer.flush()

    assert users(log) == Counter({0: 1, 1: 1, 2: 1})
    assert writer.sealed_events == 3 and writer.pending() == 0
    writer.close()


@pytest.mark.parametrize("append", [lambda w, r: w.append(r), lambda w, r: w.extend([r])], ids=["append", "extend"])
def test_a_write_cut_short_by_a_full_disk_is_cut_back_and_its_event_not_buffered(
    log: Path, monkeypatch: pytest.MonkeyPatch, append: Callable[[EventWriter, Row], None]
) -> None:
    writer = new_writer(log)
    writer.append(row(0))
    (path,) = wal_files(log)
    real_write = os.write
    calls = []

    def full_disk(fd: int, data: bytes) -> int:  # the writer's file takes 5 bytes, then the disk is full
        if os.path.realpath(f"/proc/self/fd/{fd}") != str(path.resolve()):
            return real_write(fd, data)
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[:5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError):
        append(writer, row(1))
    monkeypatch.setattr(os, "write", real_write)
    append(writer, row(2))

    decoded = decode(path.read_bytes())
    assert [r[1] for r in decoded.rows] == [0, 2] and decoded.dropped == 0 and decoded.corrupt == 0
    assert writer.pending() == 2
    writer.close()
    assert users(log) == Counter({0: 1, 2: 1})
