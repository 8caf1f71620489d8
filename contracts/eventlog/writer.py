"""The per-process event writer: every event reaches the operating system before its answer leaves.

`append` and `extend` (the service calls them before it answers) write the events with one
`os.write` to this process's write-ahead file (`contracts.eventlog.wal`) and buffer them in
memory. A background thread seals the buffer every `flush_window` seconds, or sooner when it
holds `flush_events` rows, into `<segments>/events/<name>.parquet`, the name of the write-ahead
file it came from (temporary file + rename, synced), and then deletes that file; a thread of
the lowest priority then writes the segment's summary beside it (`contracts.eventlog.summary`:
its sessions' sums, for readers). So a worker
killed with SIGKILL loses no answered event: the next start (`init_log`), a respawned worker or
any writer's close seals what it left, exactly once. The write-ahead file is synced every
`fsync_window` seconds, the most a power loss can take. A sealed segment is never changed again;
`close()` seals what is left, and the service calls it at shutdown.

The writer is fork-aware: a forked child starts with an empty buffer, no write-ahead file and its
own thread, so a server can build the app once and fork its workers.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import operator
import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from contracts.catalog import Catalog
from contracts.columns import EVENTS_TABLE, EXPERIMENTS_TABLE, WORLDS_TABLE, Columns, ExperimentColumns, WorldColumns
from contracts.eventlog.layout import SEGMENT_SUFFIX, TMP_SUFFIX, LogLayout, arrow_schemas, write_segment
from contracts.eventlog.rollup import after_seal
from contracts.eventlog.wal import WAL_FORMAT, WAL_SUFFIX, encode_record, events_table, fsync_directory, recover, segment_name

logger = logging.getLogger(__name__)

# One event: its values in the order of the declared columns, `Columns.ALL`, except that `ts`
# is epoch microseconds (UTC) and `experiments` the tuple of treatment indices in the writer's
# `experiment_names` order. Build one with `make_row`.
Row = tuple

_REQUIRED = operator.itemgetter(*Columns.ALL)


def make_row(values: Mapping[str, object]) -> Row:
    """The `Row` of a mapping from every declared column name to its value; the columns added
    after the first format (`Columns.ADDED`, nullable) may be left out and are then None."""
    if all(name in values for name in Columns.ADDED):
        return _REQUIRED(values)
    return _REQUIRED({**dict.fromkeys(Columns.ADDED), **values})


@dataclass
class _WalFile:
    """One open write-ahead file of this process, locked for as long as it is open."""

    path: Path
    fd: int
    rows: list[Row]


class EventWriter:
    """Writes the events of one process ahead to a file, and seals them into segments of the log at `layout`.

    Args:
        layout: the log's paths (created by `init_log`).
        experiment_names: the keys of every event's `experiments` map, in the order of the
            treatment tuples given to `append`.
        flush_window: seconds between seals.
        flush_events: seal sooner when this many events are buffered.
        fsync_window: seconds between syncs of the write-ahead file to disk, the most a power
            loss can take; 0 syncs every write before it returns (slow, for the careful).
    """

    def __init__(
        self,
        layout: LogLayout,
        experiment_names: Sequence[str],
        flush_window: float = 1.0,
        flush_events: int = 50_000,
        fsync_window: float = 1.0,
    ) -> None:
        self.layout = layout
        self.directory = layout.directory(EVENTS_TABLE)
        self.experiment_names = tuple(experiment_names)
        self.flush_window = flush_window
        self.flush_events = flush_events
        self.fsync_window = fsync_window
        self.schema = arrow_schemas()[EVENTS_TABLE]
        self._header = encode_record({"format": WAL_FORMAT, "columns": list(Columns.ALL), "experiments": list(self.experiment_names)})
        self._current: _WalFile | None = None
        self._sealing: list[_WalFile] = []
        self._reset()
        # pyarrow imports pandas at its first array, and that import registers an exit handler,
        # which fails once the interpreter is exiting: a process whose first seal is the one of
        # `close` at exit would leave its events to the next start. Import it now.
        pa.array([], type=pa.int64())
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.close)

    def _reset(self) -> None:
        self.sealed_events = 0
        self.sealed_segments = 0
        self._current = None  # the file being appended to; its rows are the buffer
        self._sealing = []  # files rotated out, oldest first, whose segments are not sealed yet
        self._lock = threading.Lock()
        self._seal_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._unsynced = False
        self._synced_file: Path | None = None
        self._seq = 0
        self._pid = os.getpid()
        self._summaries: queue.SimpleQueue[Path | None] = queue.SimpleQueue()  # sealed segments to sum up
        self._summary_thread: threading.Thread | None = None

    def _after_fork(self) -> None:
        # The parent's files stay the parent's: drop our copies of their descriptors (the parent
        # keeps their locks) and start afresh.
        for wal in [*self._sealing, *([self._current] if self._current is not None else [])]:
            os.close(wal.fd)
        self._reset()

    def _start(self) -> None:
        with self._seal_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="botify-eventlog", daemon=True)
                self._thread.start()

    def append(self, row: Row) -> None:
        """Write one event ahead and buffer it; it is on the operating system's side when this returns.

        The single request's path: `extend`'s steps for one row, without its copy of the batch.
        Raises OSError as `extend` does.
        """
        self._write_ahead(encode_record((row,)), (row,))

    def extend(self, rows: Iterable[Row]) -> None:
        """Write many events (a batch) ahead in one record and buffer them, in order.

        Raises OSError when the write-ahead file cannot take them (a full disk): then nothing
        of the batch is written or buffered, and the caller must not answer as if it were.
        """
        rows = list(rows)
        if not rows:
            return
        self._write_ahead(encode_record(rows), rows)

    def _write_ahead(self, record: bytes, rows: Sequence[Row]) -> None:
        """Write `record` (the encoding of `rows`) to the current write-ahead file, then buffer
        `rows`; wake the writer's thread when the buffer is full."""
        if self._thread is None:
            self._start()
        with self._lock:
            wal = self._current
            if wal is None:
                wal = self._current = self._open()
            _write_all(wal.fd, record)
            if self.fsync_window == 0:
                os.fsync(wal.fd)
            else:
                self._unsynced = True
            buffered = wal.rows
            buffered += rows
            full = len(buffered) >= self.flush_events
        if full:
            self._wake.set()

    def pending(self) -> int:
        """Events written ahead and buffered, not yet sealed into a segment."""
        with self._lock:
            current = len(self._current.rows) if self._current is not None else 0
            return current + sum(len(wal.rows) for wal in self._sealing)

    def _open(self) -> _WalFile:
        """A new write-ahead file with its header, locked; created under a hidden name so that
        `recover` never sees it unlocked."""
        self.layout.wal.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"{time.time_ns():019d}-{self._pid}-{self._seq:06d}{WAL_SUFFIX}"
        path = self.layout.wal / name
        tmp = self.layout.wal / f".{name}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write_all(fd, self._header)
            os.rename(tmp, path)
            if self.fsync_window == 0:
                os.fsync(fd)
                fsync_directory(self.layout.wal)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return _WalFile(path, fd, [])

    def _run(self) -> None:
        try:
            recover(self.layout)  # a worker that died before this one (a respawn) left its file
        except Exception:
            logger.exception("event log: recovering the write-ahead files in %s failed", self.layout.wal)
        tick = min(self.flush_window, self.fsync_window) if self.fsync_window > 0 else self.flush_window
        next_flush = time.monotonic() + self.flush_window
        while not self._closed:
            woken = self._wake.wait(tick)
            if woken:  # a wake that lands after a wait timed out stays set for the next wait
                self._wake.clear()
            if self._closed:
                break
            try:
                self.sync()
                if woken or time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + self.flush_window
                    self.flush()
            except Exception:  # the thread must survive a full disk; the rows stay buffered and written ahead
                logger.exception("event log: sealing a segment in %s failed; retrying next window", self.directory)

    def sync(self) -> None:
        """Sync the current write-ahead file to disk (the thread does this every `fsync_window`)."""
        with self._seal_lock:  # no seal closes the file meanwhile
            with self._lock:
                wal = self._current
                if not self._unsynced or wal is None:
                    return
                self._unsynced = False
            os.fsync(wal.fd)
            if self._synced_file != wal.path:  # a new file: its name must survive too
                fsync_directory(self.layout.wal)
                self._synced_file = wal.path

    def flush(self) -> Path | None:
        """Seal the buffered events now; returns the last new segment, or None when nothing was buffered.

        Each write-ahead file becomes one segment of the same name, then is deleted. When a seal
        fails, its events stay buffered and written ahead, and the next flush seals them first.
        Once the events are sealed, each new segment is handed to a thread of the lowest priority
        that writes its summary beside it, and a rollup of the summaries when one is due
        (`contracts.eventlog.rollup.after_seal`); `close` waits for it.
        """
        sealed: list[Path] = []
        last: Path | None = None
        try:
            with self._seal_lock:
                with self._lock:
                    if self._current is not None:
                        self._sealing.append(self._current)
                        self._current = None
                        self._unsynced = False
                while self._sealing:
                    wal = self._sealing[0]
                    last = self._seal(wal)
                    if wal.rows:
                        sealed.append(last)
                    with self._lock:
                        self._sealing.pop(0)
                        self.sealed_events += len(wal.rows)
                        self.sealed_segments += 1
        finally:
            self._sum_up_later(sealed)
        return last

    def _sum_up_later(self, segments: list[Path]) -> None:
        """Hand `segments` to the summing thread (`after_seal`: summaries, then a rollup when due)."""
        if not segments:
            return
        with self._lock:
            if self._summary_thread is None:
                self._summary_thread = threading.Thread(target=self._sum_up, name="botify-eventlog-summaries", daemon=True)
                self._summary_thread.start()
        for segment in segments:
            self._summaries.put(segment)

    def _sum_up(self) -> None:
        """The summing thread: at the lowest priority (nice 19, this thread only), so that a busy
        server gives the summaries only the CPU its requests leave; until `close` sends None."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # Linux: a thread's own nice value
        except (AttributeError, OSError):
            pass
        while (segment := self._summaries.get()) is not None:
            after_seal([segment])

    def _seal(self, wal: _WalFile) -> Path:
        segment = self.directory / segment_name(wal.path)
        if wal.rows:
            write_segment(self.directory, segment.name, self._table(wal.rows), exclusive=True, durable=True)
        wal.path.unlink(missing_ok=True)
        os.close(wal.fd)  # drops the lock only now: `recover` finds no file, or a sealed one
        return segment

    def close(self) -> None:
        """Seal what is left and stop the thread; idempotent, also run at interpreter exit.

        Also seals what dead writers of the same log left behind.
        """
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)
        try:
            self.flush()
        except Exception:
            logger.exception(
                "event log: sealing the last segment in %s failed; its %d events stay in %s and are sealed at the next start",
                self.directory, self.pending(), self.layout.wal,
            )
        try:
            recover(self.layout)
        except Exception:
            logger.exception("event log: recovering the write-ahead files in %s failed", self.layout.wal)
        summing = self._summary_thread
        if summing is not None and summing is not threading.current_thread():
            self._summaries.put(None)  # sum up what is queued, then stop: a clean stop leaves no segment without its summary
            summing.join(timeout=10.0)

    def _table(self, rows: list[Row]) -> pa.Table:
        return events_table(rows, self.experiment_names)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data`; on failure cut the file back, so that no partial record stays before later ones.

    The file is opened O_APPEND and only this writer writes it (under its lock), so the record
    started at the file's end less what was written of it: no seek before the write.
    """
    written = 0
    try:
        written = os.write(fd, data)
        if written < len(data):  # a short write (a nearly full disk): write the rest
            view = memoryview(data)[written:]
            while view:
                n = os.write(fd, view)
                written += n
                view = view[n:]
    except BaseException:
        if written:
            os.ftruncate(fd, os.fstat(fd).st_size - written)
        raise


def experiments_table(rows: Sequence[dict[str, object]], started_us: int) -> pa.Table:
    """The `experiments` rows of one service start as an Arrow table of the log's schema."""
    schema = arrow_schemas()[EXPERIMENTS_TABLE]
    data = {name: [row[name] for row in rows] for name in ExperimentColumns.ALL if name != ExperimentColumns.STARTED}
    data[ExperimentColumns.STARTED] = [started_us] * len(rows)
    return pa.Table.from_pydict(data, schema=schema)


def world_row(catalog: Catalog) -> dict[str, object]:
    """The `worlds` row of a start that serves `catalog`'s world."""
    return {
        WorldColumns.FINGERPRINT: catalog.fingerprint,
        WorldColumns.PATH: str(catalog.path.absolute()),
        WorldColumns.TRACKS: catalog.n_tracks,
    }


def record_start(
    layout: LogLayout, rows: Sequence[dict[str, object]], started_us: int, world: Mapping[str, object] | None = None
) -> Path | None:
    """Write the start record once per `started_us` (workers of one start may all try).

    `rows` are the `experiments` rows; `world` (see `world_row`) is the `worlds` row,
    written first so that a start's experiments record never lacks its world.
    """
    name = f"{started_us:019d}{SEGMENT_SUFFIX}"
    if world is not None:
        values = {column: [world[column]] for column in WorldColumns.ALL if column != WorldColumns.STARTED}
        table = pa.Table.from_pydict({WorldColumns.STARTED: [started_us], **values}, schema=arrow_schemas()[WORLDS_TABLE])
        write_segment(layout.directory(WORLDS_TABLE), name, table, exclusive=True)
    return write_segment(layout.directory(EXPERIMENTS_TABLE), name, experiments_table(rows, started_us), exclusive=True)
