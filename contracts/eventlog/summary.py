"""A sealed segment's summary: what a reader sums up of its events, computed once when it is sealed.

Beside each segment `events/<name>.parquet` the seal leaves `events/<name>.summary` (a Parquet
file whose suffix keeps it out of the log's `*.parquet` views). For every experiment of the
segment's events it holds one `session` row per (user, session id): the session's sums over the
segment's events (`groups.GroupColumns.SUMS`) and the recommenders that served them; and the
`latency` rows of the experiment's latency histograms, in the bins of the experiment's span in
the segment (at most a day wide, so that they add up into the bins of any longer span). Its
metadata holds each experiment's data-quality counts and bin width, the events without a session
id, and the segment's size, modification time and row count. A reader adds the summaries of many
segments instead of grouping their events again (`abtest.dashboard.increments`); every query is
one of `contracts.eventlog.groups`, so the sums are those of the events, to the last digit.

A summary is believed only while its segment has the size, modification time and row count
written in it (`read_summary`); any other summary, or none, means: read the segment's events.
Writing one never fails a seal: a summary that cannot be written is logged and left out.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.columns import Columns, quote, sql_string
from contracts.eventlog.groups import (
    DECIMAL,
    NESTED_BIN_S,
    GroupColumns,
    Problem,
    Query,
    bin_width,
    events_sql,
    histogram_sql,
    quality_sql,
    sums_sql,
    time_bin_sql,
)
from contracts.eventlog.layout import SEGMENT_SUFFIX, SUMMARY_SUFFIX, TMP_SUFFIX

logger = logging.getLogger(__name__)

SUMMARY_FORMAT = 1  # bump when a sum's definition changes: readers ignore summaries of another format
METADATA_KEY = b"botify.summary"
_EVENTS = "summary_events"  # the segment's events, a temporary table of the summing connection


class SummaryColumns:
    """Columns of a summary's rows; a `session` row leaves the latency columns NULL, a `latency` row the session's."""

    KIND = "kind"  # VARCHAR: 'session' or 'latency'
    EXPERIMENT = "experiment"  # VARCHAR: the experiment whose treatment index is `arm`, or whose requests are counted
    USER = GroupColumns.USER
    SESSION = GroupColumns.SESSION
    RECOMMENDERS = "recommenders"  # VARCHAR[]: the recommenders that served the session's events here (for a recommender filter)
    RECOMMENDER = "recommender"  # latency: the recommender that served
    BIN = "bin"  # latency: TIMESTAMP, the start of the time bin (of the width in the metadata's `bins`)
    BUCKET = "bucket"  # latency: the histogram bucket (`groups.bucket_sql`)
    REQUESTS = "requests_counted"  # latency: the events of that recommender, bin and bucket

    SESSION_KIND = "session"
    LATENCY_KIND = "latency"


def summary_path(segment: Path) -> Path:
    """Where the summary of `segment` (`<name>.parquet`) lies: `<name>.summary` beside it."""
    name = segment.name[: -len(SEGMENT_SUFFIX)] if segment.name.endswith(SEGMENT_SUFFIX) else segment.name
    return segment.with_name(name + SUMMARY_SUFFIX)


@dataclass(frozen=True)
class Counts:
    """The counts that a summary's (or a rollup's) metadata carries over the segments it covers.

    Attributes:
        without_session: Their events without a session id (any experiment).
        quality: Experiment -> rows dropped per `Problem.ALL` (rows of the experiment or without an `experiments` map).
        other_quality: The same for an experiment absent from them (their rows without a map).
        bins: Experiment -> the width in seconds of its latency rows' time bins.
    """

    without_session: int
    quality: dict[str, tuple[int, ...]]
    other_quality: tuple[int, ...]
    bins: dict[str, int]

    def quality_of(self, experiment: str) -> tuple[int, ...]:
        """The rows dropped per `Problem.ALL` for `experiment`, as `groups.quality_sql` counts them."""
        return self.quality.get(experiment, self.other_quality)

    @staticmethod
    def read(metadata: dict[str, Any]) -> dict[str, Any] | None:
        """`Counts`' fields from parsed metadata, or None when the quality counts have another length."""
        quality = {name: tuple(int(n) for n in counts) for name, counts in metadata["quality"].items()}
        other = tuple(int(n) for n in metadata["other_quality"])
        if any(len(counts) != len(Problem.ALL) for counts in (*quality.values(), other)):
            return None
        bins = {name: int(width) for name, width in metadata["bins"].items()}
        return {"without_session": int(metadata["without_session"]), "quality": quality, "other_quality": other, "bins": bins}


@dataclass(frozen=True)
class Summary(Counts):
    """What a summary's metadata says (its rows are read with `groups_sql` and `latency_sql`).

    Attributes:
        path: The summary file.
        segment: The segment it sums up.
        size, mtime_ns, rows: The segment's size, modification time and row count when it was summed up.
    """

    path: Path
    segment: Path
    size: int
    mtime_ns: int
    rows: int


def summarize(segment: Path) -> tuple[pa.Table, dict[str, Any]]:
    """The summary of the sealed segment `segment`: its rows and its metadata (with the segment's
    row count; `write_summary` adds its name, size and time). The events are read back from the
    file, which DuckDB reads many times faster than the Arrow table they were sealed from."""
    with _cursor() as connection:
        connection.execute(f"CREATE OR REPLACE TEMP TABLE {_EVENTS} AS SELECT * FROM read_parquet({sql_string(str(segment))})")
        try:
            return _summarize(connection)
        finally:
            connection.execute(f"DROP TABLE IF EXISTS {_EVENTS}")


def _summarize(connection: duckdb.DuckDBPyConnection) -> tuple[pa.Table, dict[str, Any]]:
    """`summarize` of the events in the table `_EVENTS` of `connection`: one query per kind of row
    over every experiment at once (each event once per experiment its map names), so that a small
    segment costs a few queries, not a few per experiment."""
    e, ses = quote(Columns.EXPERIMENTS), quote(Columns.SESSION)
    ((rows, without_session, without_map),) = connection.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {ses} IS NULL), count(*) FILTER (WHERE {e} IS NULL) FROM {_EVENTS}"
    ).fetchall()
    other_counts: tuple[int, ...] = (0,) * len(Problem.ALL)
    if without_map:  # rows without a map count for every experiment (never in a segment botify sealed)
        other = quality_sql("", f"(SELECT * FROM {_EVENTS} WHERE {e} IS NULL)")
        (other_counts,) = connection.execute(other.sql, other.params).fetchall()
    query = quality_sql("", _NAMED, name=_NAME)
    quality = {name: [int(a) + int(b) for a, b in zip(counts, other_counts, strict=True)] for name, *counts in connection.execute(query.sql).fetchall()}
    query = _sessions_query()
    sessions = connection.sql(query.sql).to_arrow_table()
    parts = [sessions]
    bins: dict[str, int] = {}
    if sessions.num_rows:
        # The bins of the span of the sessions' events: a reader uses the summary only when every
        # event has a session id, and otherwise the bins of a shorter span still divide the chart's.
        spans = sessions.group_by(SummaryColumns.EXPERIMENT).aggregate([(GroupColumns.START, "min"), (GroupColumns.LAST, "max")])
        for name, first, last in zip(*(spans.column(i).to_pylist() for i in range(3)), strict=True):
            bins[name] = min(bin_width(first, last), NESTED_BIN_S)
        query = _latency_query(bins)
        parts.append(connection.sql(query.sql).to_arrow_table())
    else:
        parts.append(_no_latency_rows(connection))
    for name in bins:
        quality.setdefault(name, list(other_counts))
    metadata = {
        "format": SUMMARY_FORMAT,
        "rows": int(rows),
        "without_session": int(without_session),
        "quality": quality,
        "other_quality": [int(n) for n in other_counts],
        "bins": bins,
    }
    return pa.concat_tables(parts, promote_options="default"), metadata


# Each event once per experiment its map names, the name in column _NAME (no row for an event
# without a map: `other_quality` counts those).
_NAME = "summary_experiment"
_NAMED = f"(SELECT *, unnest(map_keys({quote(Columns.EXPERIMENTS)})) AS {_NAME} FROM {_EVENTS})"


def _sessions_query() -> Query:
    """The `session` rows: every experiment's events with a session id, grouped per (experiment, user, session)."""
    s, g = SummaryColumns, GroupColumns
    ev = events_sql("", True, _NAMED, name=_NAME)
    user, session, recommender = quote(s.USER), quote(s.SESSION), quote(Columns.RECOMMENDER)
    # A segment's sums of one session stay below 10^9 (`groups.LIMIT`): they keep their scale in a
    # 64-bit DECIMAL, which a reader reads and adds faster than the 128-bit one of `sum`.
    narrow = ", ".join(f"{quote(c)}::{DECIMAL} AS {quote(c)}" for c in (g.TIME, g.LATENCY_SUM))
    sql = f"""
        SELECT '{s.SESSION_KIND}' AS {s.KIND}, * REPLACE ({narrow})
        FROM (
            SELECT name AS {s.EXPERIMENT}, {user}, {session}, {sums_sql(True)},
                   list(DISTINCT {recommender}) FILTER (WHERE {recommender} IS NOT NULL) AS {s.RECOMMENDERS}
            FROM ({ev.sql}) WHERE {session} IS NOT NULL
            GROUP BY name, {user}, {session}
        )"""
    return Query(sql, ev.params)


def _latency_query(bins: dict[str, int]) -> Query:
    """The `latency` rows of the experiments of `bins`, each in its bins (width in seconds)."""
    s = SummaryColumns
    ts = quote(Columns.TS)
    key = "CASE name " + " ".join(f"WHEN {sql_string(name)} THEN {time_bin_sql(ts, width)}" for name, width in bins.items()) + " END"
    histogram = histogram_sql(events_sql("", True, _NAMED, name=_NAME), key, by="name")
    sql = f"""
        SELECT '{s.LATENCY_KIND}' AS {s.KIND}, name AS {s.EXPERIMENT}, recommender AS {s.RECOMMENDER},
               bin AS {s.BIN}, bucket::INTEGER AS {s.BUCKET}, requests::BIGINT AS {s.REQUESTS}
        FROM ({histogram.sql}) WHERE bin IS NOT NULL"""
    return Query(sql, histogram.params)


def _no_latency_rows(connection: duckdb.DuckDBPyConnection) -> pa.Table:
    """No `latency` rows, with their columns: every summary has every column, whatever its events."""
    query = _latency_query({"": NESTED_BIN_S})
    return connection.sql(f"SELECT * FROM ({query.sql}) LIMIT 0").to_arrow_table()


_summing = threading.Lock()
_connection: duckdb.DuckDBPyConnection | None = None


def _before_fork() -> None:
    """Wait for the summary being computed, then close the connection: a child forked from a process
    with a DuckDB database open (a server forking its workers) may inherit DuckDB's state and hang
    at its first connection."""
    global _connection
    _summing.acquire()
    if _connection is not None:
        _connection.close()
        _connection = None


def _after_fork_in_child() -> None:
    global _summing
    _summing = threading.Lock()


os.register_at_fork(before=_before_fork, after_in_parent=lambda: _summing.release(), after_in_child=_after_fork_in_child)


@contextmanager
def _cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """This process's summing connection, held for the block: one summary at a time, on one DuckDB
    thread (a seal runs beside the service and takes one core at most); opened at the first summary
    (it costs 20 ms) and closed before a fork."""
    global _connection
    with _summing:
        if _connection is None:
            _connection = duckdb.connect(config={"threads": 1})
            _connection.execute("SET enable_progress_bar = false")
        yield _connection


def write_summary(segment: Path) -> Path:
    """Sum up the sealed segment `segment` into `summary_path(segment)`, recording the segment's
    name, size, modification time and row count (temporary file, then rename)."""
    info = segment.stat()  # before it is read: a segment changed meanwhile disagrees with its summary
    rows, metadata = summarize(segment)
    metadata.update(segment=segment.name, size=info.st_size, mtime_ns=info.st_mtime_ns)
    rows = rows.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, separators=(",", ":")).encode()})
    path = summary_path(segment)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    pq.write_table(rows, tmp, compression="lz4")  # read back 2x faster than zstd, for a third more bytes
    os.replace(tmp, path)
    return path


def read_summary(segment: Path) -> Summary | None:
    """The summary of `segment`, or None when it has none, or one that is unreadable, of another
    format, or written for a segment of another name, size, modification time or row count."""
    path = summary_path(segment)
    try:
        raw = pq.read_schema(path).metadata or {}
        metadata = json.loads(raw[METADATA_KEY])
        if metadata.get("format") != SUMMARY_FORMAT or metadata.get("segment") != segment.name:
            return None
        info = segment.stat()
        if (info.st_size, info.st_mtime_ns) != (metadata["size"], metadata["mtime_ns"]):
            return None
        if pq.read_metadata(segment).num_rows != metadata["rows"]:
            return None
        counts = Counts.read(metadata)
        if counts is None:
            return None
        return Summary(path=path, segment=segment, size=int(metadata["size"]), mtime_ns=int(metadata["mtime_ns"]), rows=int(metadata["rows"]), **counts)
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):  # missing, torn or foreign: read the events
        return None


def _files(paths: Sequence[Path]) -> str:
    return "[" + ", ".join(sql_string(str(path)) for path in paths) + "]"


def groups_sql(paths: Sequence[Path], experiment: str, recommenders: tuple[str, ...] = ()) -> Query:
    """`groups.GroupColumns` rows of `experiment` from the summaries (or rollups, `contracts.eventlog.rollup`)
    at `paths`: one per file and (user, session), to be added up per (user, session) across files; `served` is the recommenders filter
    (`recommenders`, TRUE when empty), as `abtest.sessionize` computes it from events."""
    s, g = SummaryColumns, GroupColumns
    if recommenders:
        served = f"coalesce(list_has_any({s.RECOMMENDERS}, [{', '.join('?' for _ in recommenders)}]::VARCHAR[]), false)"
    else:
        served = "true"
    columns = ", ".join(quote(c) for c in (s.USER, s.SESSION, *g.SUMS))
    sql = f"""
        SELECT {columns}, {served} AS {g.SERVED} FROM read_parquet({_files(paths)})
        WHERE {s.KIND} = '{s.SESSION_KIND}' AND {s.EXPERIMENT} = ?"""
    return Query(sql, [*recommenders, experiment])


def latency_sql(paths: Sequence[Path], experiment: str, width: int) -> Query:
    """(recommender, bin, bucket, requests) of `experiment`'s latency histograms in the summaries (or
    rollups) at `paths`, in `width`-second bins (`groups.histogram_sql`'s columns); each file's bins
    must divide `width`."""
    s = SummaryColumns
    sql = f"""
        SELECT {s.RECOMMENDER} AS recommender, {time_bin_sql(s.BIN, width)} AS bin, {s.BUCKET} AS bucket, sum({s.REQUESTS})::BIGINT AS requests
        FROM read_parquet({_files(paths)})
        WHERE {s.KIND} = '{s.LATENCY_KIND}' AND {s.EXPERIMENT} = ?
        GROUP BY ALL"""
    return Query(sql, [experiment])
