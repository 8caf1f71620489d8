"""Rollups: the summaries of many sealed segments added up into one file, after seals.

A summary (`contracts.eventlog.summary`) holds one row per session and segment; a session whose
events lie in several segments has a row in each, and a reader adds them up again at every first
page. After each seal the sealing process rolls the summaries that lie outside the newest rollup
into a new one (the newest rollup's rows and theirs, added up per experiment and session: one row
per session), once they are at least `MIN_NEW` and a quarter of the segments that rollup holds,
so each summary is added up a bounded number of times on average however long the log grows. A
rollup (`events/<time>-<segments>.rollup`, a Parquet file of the summaries' columns) records the
name, size, modification time and row count of every segment it holds; a reader uses it only
while all of those segments are there unchanged (`read_rollup`), and otherwise reads their
summaries. Only the two newest rollups are kept: a reader that found the older one a moment ago can
still read it.

`seal` is the service's seal of a segment: the segment, its summary, then a rollup when one is due.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.columns import quote, sql_string
from contracts.eventlog.groups import DECIMAL, GroupColumns, merged_sums_sql, time_bin_sql
from contracts.eventlog.layout import ROLLUP_SUFFIX, SEGMENT_SUFFIX, TMP_SUFFIX, file_lock, write_segment
from contracts.eventlog.summary import (
    METADATA_KEY,
    Counts,
    Summary,
    SummaryColumns,
    _cursor,
    read_summary,
    summary_path,
    write_summary,
)

logger = logging.getLogger(__name__)

ROLLUP_FORMAT = 1
MIN_NEW = 16  # summaries outside the newest rollup before a new one is written, at least
GROWTH = 0.25  # ... and at least this share of the segments the newest rollup holds
KEEP = 2  # rollups kept, newest first
LOCK = ".rollup.lock"

Members = dict[str, tuple[int, int, int]]  # segment name -> (size, modification time in ns, rows)


@dataclass(frozen=True)
class Rollup(Counts):
    """What a rollup's metadata says; its rows are read like a summary's (`summary.groups_sql`, `latency_sql`).

    Attributes:
        path: The rollup file.
        members: The segments it holds, with the size, modification time and row count they had.
    """

    path: Path
    members: Members


def seal(directory: Path, name: str, table: pa.Table, *, exclusive: bool = False, durable: bool = False) -> Path | None:
    """Seal `table` as the segment `directory/name` (`layout.write_segment`, whose arguments these
    are), then `after_seal`; returns the segment, or None when `exclusive` and it existed."""
    segment = write_segment(directory, name, table, exclusive=exclusive, durable=durable)
    if segment is not None:
        after_seal([segment])
    return segment


def after_seal(segments: list[Path]) -> None:
    """Write the summaries of segments just sealed, then a rollup of their directory if one is due.
    Never raises: the events are sealed whatever happens here (a failure is logged, and readers
    read those segments' events or summaries instead)."""
    for segment in segments:
        try:
            write_summary(segment)
        except Exception:
            logger.exception("event log: summing up %s failed; readers will read its events", segment)
    for directory in {segment.parent for segment in segments}:
        try:
            roll_up(directory)
        except Exception:
            logger.exception("event log: rolling up the summaries in %s failed; readers will read the summaries", directory)


def _rollups(directory: Path) -> list[Path]:
    """The rollup files of `directory`, newest first."""
    return sorted(directory.glob(f"*{ROLLUP_SUFFIX}"), key=lambda path: path.name, reverse=True)


def _read(path: Path) -> Rollup | None:
    try:
        metadata = json.loads((pq.read_schema(path).metadata or {})[METADATA_KEY])
        if metadata.get("format") != ROLLUP_FORMAT:
            return None
        counts = Counts.read(metadata)
        if counts is None:
            return None
        members = {name: (int(size), int(mtime), int(rows)) for name, (size, mtime, rows) in metadata["members"].items()}
        return Rollup(path=path, members=members, **counts)
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):  # torn or foreign: not used
        return None


def read_rollup(directory: Path, files: Mapping[str, tuple[int, int]]) -> Rollup | None:
    """The newest rollup of `directory` whose segments are all among `files` (path -> size and
    modification time in ns) with the size and time it recorded; None when there is none."""
    for path in _rollups(directory):
        rollup = _read(path)
        if rollup is not None and all(files.get(str(directory / name)) == (size, mtime) for name, (size, mtime, _) in rollup.members.items()):
            return rollup
    return None


def roll_up(directory: Path) -> Path | None:
    """Write a new rollup of `directory` when one is due (see the module's docstring); returns it,
    or None when none is due or another process is writing one."""
    with file_lock(directory / LOCK, blocking=False) as free:
        if not free:
            return None
        segments = {path.name: path for path in directory.glob(f"*{SEGMENT_SUFFIX}")}
        files = {}
        for path in segments.values():
            try:
                info = path.stat()
            except OSError:
                continue
            files[str(path)] = (info.st_size, info.st_mtime_ns)
        base = read_rollup(directory, files)
        held = base.members if base is not None else {}
        candidates = sorted(name for name in segments if name not in held and summary_path(segments[name]).exists())
        if len(candidates) < max(MIN_NEW, GROWTH * len(held)):
            return None
        summaries = [summary for summary in (read_summary(segments[name]) for name in candidates) if summary is not None]
        if not summaries:
            return None
        path = _write(directory, base, summaries)
        for stale in _rollups(directory)[KEEP:]:
            stale.unlink(missing_ok=True)
        return path


def _write(directory: Path, base: Rollup | None, summaries: list[Summary]) -> Path:
    """The rollup of `base` (None: none) and `summaries`, written into `directory`."""
    parts: list[Rollup | Summary] = [*([base] if base is not None else []), *summaries]
    listing = "[" + ", ".join(sql_string(str(item.path)) for item in parts) + "]"
    experiments = sorted({name for item in parts for name in (*item.quality, *item.bins)})
    # The widest of the files' bins: each divides it (they are at most a day wide, `summary`).
    bins = {name: max(widths) for name in experiments if (widths := [item.bins[name] for item in parts if name in item.bins])}
    with _cursor() as connection:
        rows = connection.sql(_rows_sql(listing, bins)).to_arrow_table()
    members: Members = dict(base.members) if base is not None else {}
    for summary in summaries:
        members[summary.segment.name] = (summary.size, summary.mtime_ns, summary.rows)
    metadata = {
        "format": ROLLUP_FORMAT,
        "members": {name: list(stat) for name, stat in sorted(members.items())},
        "without_session": sum(item.without_session for item in parts),
        "quality": {name: [sum(column) for column in zip(*(item.quality_of(name) for item in parts), strict=True)] for name in experiments},
        "other_quality": [sum(column) for column in zip(*(item.other_quality for item in parts), strict=True)],
        "bins": bins,
    }
    rows = rows.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, separators=(",", ":")).encode()})
    path = directory / f"{time.time_ns():019d}-{len(members)}{ROLLUP_SUFFIX}"  # names sort oldest first
    tmp = directory / f".{path.name}.{os.getpid()}{TMP_SUFFIX}"
    pq.write_table(rows, tmp, compression="lz4")
    os.replace(tmp, path)
    return path


def _rows_sql(listing: str, bins: dict[str, int]) -> str:
    """SQL: the rows of the files `listing`, the sessions added up per experiment and session and
    the latency histograms put into each experiment's `bins` and added up."""
    s, g = SummaryColumns, GroupColumns
    keys = ", ".join(quote(c) for c in (s.EXPERIMENT, s.USER, s.SESSION))
    narrow = ", ".join(f"{quote(c)}::{DECIMAL} AS {quote(c)}" for c in (g.TIME, g.LATENCY_SUM))  # a session's sums stay below 10^9
    sessions = f"""
        SELECT '{s.SESSION_KIND}' AS {s.KIND}, * REPLACE ({narrow}) FROM (
            SELECT {keys}, {merged_sums_sql()}, list_distinct(flatten(list({s.RECOMMENDERS}))) AS {s.RECOMMENDERS}
            FROM read_parquet({listing}) WHERE {s.KIND} = '{s.SESSION_KIND}'
            GROUP BY {keys}
        )"""
    latency = [
        f"""
        SELECT '{s.LATENCY_KIND}' AS {s.KIND}, {s.EXPERIMENT}, {s.RECOMMENDER}, {time_bin_sql(s.BIN, width)} AS {s.BIN}, {s.BUCKET},
               sum({s.REQUESTS})::BIGINT AS {s.REQUESTS}
        FROM read_parquet({listing}) WHERE {s.KIND} = '{s.LATENCY_KIND}' AND {s.EXPERIMENT} = {sql_string(name)}
        GROUP BY ALL"""
        for name, width in bins.items()
    ]
    return " UNION ALL BY NAME ".join([sessions, *latency])
