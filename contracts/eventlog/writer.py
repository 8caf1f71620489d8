"""The per-process event writer: buffer rows in memory, seal them as a Parquet segment per window.

Serving appends a tuple per event (cheap, under a lock). A background thread seals the buffer
every `flush_window` seconds, or sooner when it holds `flush_events` rows, into
`<segments>/events/<ns>-<pid>-<seq>.parquet` (temporary file + rename). So a killed process
loses at most the events of its last window, and a sealed segment is never changed again.
`close()` seals what is left; the service calls it at shutdown.

The writer is fork-aware: a forked child starts with an empty buffer and its own thread, so a
server can build the app once and fork its workers.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa

from contracts.columns import EVENTS_TABLE, EXPERIMENTS_TABLE, WORLDS_TABLE, Columns, ExperimentColumns, WorldColumns
from contracts.eventlog.layout import SEGMENT_SUFFIX, LogLayout, arrow_schemas, write_segment
from contracts.catalog import Catalog

logger = logging.getLogger(__name__)

# One event, in column order of `Columns.ALL`, except: `ts` is epoch microseconds (UTC) and
# `experiments` is the tuple of treatment indices in the writer's `experiment_names` order.
Row = tuple[int, int, int | None, str, int, float, int | None, str, float, tuple[int, ...], float | None, str | None, str | None]


class EventWriter:
    """Buffers events of one process and seals them into segments of the log at `layout`.

    Args:
        layout: the log's paths (created by `init_log`).
        experiment_names: the keys of every event's `experiments` map, in the order of the
            treatment tuples given to `append`.
        flush_window: seconds between seals; the most a killed process loses.
        flush_events: seal sooner when this many events are buffered.
    """

    def __init__(self, layout: LogLayout, experiment_names: Sequence[str], flush_window: float = 1.0, flush_events: int = 50_000) -> None:
        self.layout = layout
        self.directory = layout.directory(EVENTS_TABLE)
        self.experiment_names = tuple(experiment_names)
        self.flush_window = flush_window
        self.flush_events = flush_events
        self.schema = arrow_schemas()[EVENTS_TABLE]
        self.sealed_events = 0
        self.sealed_segments = 0
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.close)

    def _reset(self) -> None:
        self._rows: list[Row] = []
        self._lock = threading.Lock()
        self._seal_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._seq = 0
        self._pid = os.getpid()

    def _start(self) -> None:
        with self._seal_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="botify-eventlog", daemon=True)
                self._thread.start()

    def append(self, row: Row) -> None:
        """Buffer one event."""
        if self._thread is None:
            self._start()
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= self.flush_events
        if full:
            self._wake.set()

    def extend(self, rows: Iterable[Row]) -> None:
        """Buffer many events (a batch), in order."""
        if self._thread is None:
            self._start()
        with self._lock:
            self._rows.extend(rows)
            full = len(self._rows) >= self.flush_events
        if full:
            self._wake.set()

    def pending(self) -> int:
        """Events buffered and not yet sealed."""
        return len(self._rows)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_window)
            self._wake.clear()
            if self._closed:
                break
            try:
                self.flush()
            except Exception:  # the thread must survive a full disk; the rows stay buffered
                logger.exception("event log: sealing a segment in %s failed; retrying next window", self.directory)

    def flush(self) -> Path | None:
        """Seal the buffered events now; returns the new segment, or None when nothing was buffered."""
        with self._seal_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return None
            try:
                table = self._table(rows)
                self._seq += 1
                name = f"{time.time_ns():019d}-{self._pid}-{self._seq:06d}{SEGMENT_SUFFIX}"
                path = write_segment(self.directory, name, table)
            except BaseException:
                with self._lock:
                    self._rows[:0] = rows
                raise
            self.sealed_events += len(rows)
            self.sealed_segments += 1
            return path

    def close(self) -> None:
        """Seal what is left and stop the thread; idempotent, also run at interpreter exit."""
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
            logger.exception("event log: sealing the last segment in %s failed; %d events lost", self.directory, self.pending())

    def _table(self, rows: list[Row]) -> pa.Table:
        columns = list(zip(*rows, strict=True))
        schema = self.schema
        arrays: list[pa.Array] = []
        for index, name in enumerate(Columns.ALL):
            field_type = schema.field(name).type
            if index >= len(columns) and name in Columns.ADDED:  # a row of an older format: NULL
                arrays.append(pa.nulls(len(rows), type=field_type))
            elif name == Columns.EXPERIMENTS:
                arrays.append(self._experiments_array(columns[index], field_type))
            else:
                arrays.append(pa.array(columns[index], type=field_type))
        return pa.Table.from_arrays(arrays, schema=schema)

    def _experiments_array(self, assignments: Sequence[tuple[int, ...]], field_type: pa.MapType) -> pa.Array:
        n, k = len(assignments), len(self.experiment_names)
        offsets = pa.array(range(0, n * k + 1, k), type=pa.int32())
        keys = pa.array(self.experiment_names * n, type=field_type.key_type)
        items = pa.array([index for row in assignments for index in row], type=field_type.item_type)
        return pa.MapArray.from_arrays(offsets, keys, items, type=field_type)


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
