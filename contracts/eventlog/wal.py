"""The write-ahead files of the event log: every answered event reaches the operating system first.

Each writer (one per worker process) appends its events to a file of its own under
`<segments>/wal/` with `os.write` before the answer leaves, and later seals the same events from
memory into a Parquet segment named after that file (`<name>.wal` -> `events/<name>.parquet`);
then it deletes the file. A process killed with SIGKILL leaves its file behind; `recover` seals
it into the same segment name, so an event is sealed exactly once whoever seals it: the
segment is linked exclusively, and a file whose segment exists is only deleted.

A live writer holds an flock on each of its files until they are sealed (the kernel drops it when
the process dies, however it dies), so `recover` never touches a live worker's file.

The file format: records of `<u32 length, u32 crc32>` then `length` bytes of JSON (orjson). The
first record is the header `{"format": 1, "columns": [...], "experiments": [...]}` (the
declared columns and the experiment names of the `experiments` tuples when the file was
written); every later record is a list of rows, one `append` or `extend` call. A crash in the
middle of a write leaves an incomplete (or, after power loss, garbled) tail record: reading
stops there, and every complete record before it is kept. A complete record whose checksum fails
(a disk fault in the middle of the file) is skipped by its length, so the records after it are
kept too; recovery counts what it skipped and keeps the file aside as evidence.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pyarrow as pa

from contracts.columns import EVENTS_TABLE, Columns
from contracts.eventlog.layout import SEGMENT_SUFFIX, LogLayout, arrow_schemas
from contracts.eventlog.rollup import seal

logger = logging.getLogger(__name__)

WAL_FORMAT = 1
WAL_SUFFIX = ".wal"
_HEADER = struct.Struct("<II")  # payload length, crc32 of the payload


def encode_record(payload: object) -> bytes:
    """One record: the length and CRC-32 of `payload`'s JSON, then the JSON."""
    data = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)  # a row may hold numpy scalars
    return _HEADER.pack(len(data), zlib.crc32(data)) + data


class Decoded(NamedTuple):
    """What a write-ahead file holds.

    Attributes:
        header: the first record (columns and experiment names), or None when even it is incomplete.
        rows: every row of every complete record after the header, in order.
        dropped: bytes at the end that do not form a complete record (a torn last write).
        corrupt: complete records skipped because their checksum or JSON is wrong.
    """

    header: dict[str, Any] | None
    rows: list[list[Any]]
    dropped: int
    corrupt: int = 0


def decode(data: bytes) -> Decoded:
    """Read the records of a write-ahead file's bytes: a complete record that fails its checksum is
    skipped (its length is all that is trusted of it); reading stops at the first incomplete one."""
    offset, size = 0, len(data)
    header: dict[str, Any] | None = None
    rows: list[list[Any]] = []
    corrupt = 0
    while offset + _HEADER.size <= size:
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        if length == 0 or len(payload) < length:  # no record is empty: zeros are a tail never written
            break
        offset = start + length
        value: Any = None
        if zlib.crc32(payload) == crc:
            try:
                value = orjson.loads(payload)
            except orjson.JSONDecodeError:
                value = None
        if header is None:
            if not isinstance(value, dict):  # without its header no row can be read
                offset = start - _HEADER.size
                break
            header = value
        elif isinstance(value, list):
            rows.extend(value)
        else:
            corrupt += 1
    return Decoded(header, rows, size - offset, corrupt)


def events_table(rows: Sequence[Sequence[Any]], experiment_names: Sequence[str], columns: Sequence[str] = Columns.ALL) -> pa.Table:
    """Rows whose values are in the order of `columns` as an Arrow table of the declared `events` schema.

    Declared columns that `columns` lacks (a column added since the rows were written) are
    null; `experiments` values are tuples of treatment indices in `experiment_names` order.
    """
    schema = arrow_schemas()[EVENTS_TABLE]
    position = {name: index for index, name in enumerate(columns)}
    values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    arrays: list[pa.Array] = []
    for name in Columns.ALL:
        field_type = schema.field(name).type
        index = position.get(name)
        if index is None:
            arrays.append(pa.nulls(len(rows), type=field_type))
        elif name == Columns.EXPERIMENTS:
            arrays.append(_experiments_array(values[index], experiment_names, field_type))
        else:
            arrays.append(pa.array(values[index], type=field_type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _experiments_array(assignments: Sequence[Sequence[int]], names: Sequence[str], field_type: pa.MapType) -> pa.Array:
    n, k = len(assignments), len(names)
    offsets = pa.array(range(0, n * k + 1, k), type=pa.int32())
    keys = pa.array(list(names) * n, type=field_type.key_type)
    items = pa.array(list(itertools.chain.from_iterable(assignments)), type=field_type.item_type)
    return pa.MapArray.from_arrays(offsets, keys, items, type=field_type)


def segment_name(wal: Path) -> str:
    """The segment that seals the write-ahead file `wal`: the same name, in `events/`."""
    return wal.name[: -len(WAL_SUFFIX)] + SEGMENT_SUFFIX


def fsync_directory(directory: Path) -> None:
    """Make the names created or removed in `directory` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(layout: LogLayout) -> int:
    """Seal the write-ahead files that dead writers left in `layout`; returns the events recovered.

    Safe to run from several processes at once and while writers are alive: a file whose
    writer lives is locked and skipped, and each file's events are sealed at most once.
    """
    directory = layout.wal
    if not directory.is_dir():
        return 0
    recovered = 0
    for path in sorted(directory.glob(f"*{WAL_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # sealed by its writer or another recovery meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's
            if os.fstat(fd).st_nlink == 0:
                continue  # sealed and removed between our open and our lock
            recovered += _recover_one(layout, path, fd)
        finally:
            os.close(fd)
    return recovered


def _recover_one(layout: LogLayout, path: Path, fd: int) -> int:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    decoded = decode(b"".join(chunks))
    if decoded.header is None or decoded.header.get("format") != WAL_FORMAT:
        corrupt = path.with_name(path.name + ".corrupt")
        os.replace(path, corrupt)
        logger.error("event log: %s is not a readable write-ahead file; moved aside to %s", path, corrupt)
        return 0
    if decoded.dropped:
        logger.warning("event log: %s ends in an incomplete record (%d bytes, a write cut short); dropped it", path, decoded.dropped)
    if decoded.corrupt:
        logger.error(
            "event log: %s holds %d record(s) that fail their checksum (a disk fault or a power loss); skipped them, "
            "kept the others, and kept the file as %s", path, decoded.corrupt, path.name + ".corrupt",
        )
    columns = decoded.header["columns"]
    unknown = sorted(set(columns) - set(Columns.ALL))
    if unknown:
        logger.warning("event log: %s has columns that are no longer declared (%s); their values are dropped", path, ", ".join(unknown))
    sealed = 0
    if decoded.rows:
        table = events_table(decoded.rows, decoded.header["experiments"], columns)
        if seal(layout.directory(EVENTS_TABLE), segment_name(path), table, exclusive=True, durable=True) is not None:
            sealed = len(decoded.rows)
            logger.warning("event log: recovered %d events that a stopped worker had written to %s", sealed, path)
    if decoded.corrupt:
        os.replace(path, path.with_name(path.name + ".corrupt"))  # out of recovery's way, kept for inspection
    else:
        path.unlink(missing_ok=True)
    return sealed
