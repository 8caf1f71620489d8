"""The experiment's sessions kept between requests and extended as the log grows, segment by segment.

The log's events are sealed Parquet segments that never change (`contracts.eventlog.reader.event_files`).
A page keeps, per experiment, the session groups (`sessionize.GroupColumns`: minima, counts, exact
sums), the data-quality counts and the latency histograms (in the chart's bins, which only
grow coarser as the log's span grows) of the segments it has read; when new segments are sealed, it
groups only those and adds them to the kept groups (`sessionize.merge_groups_sql`), so a page of a
running simulation's large log groups the events of the last poll, not all of them again. The sums
are exact, so the sessions equal those of `abtest report` to the last digit. A kept segment that
changed or vanished (a compaction, a reset) sends the page back to grouping every segment.

Segments are read from what botify wrote when it sealed them, where it agrees with them: the
newest rollup of summaries (`contracts.eventlog.rollup`, one row per session over many segments),
then each remaining segment's summary (`contracts.eventlog.summary`); only the others (no summary,
or one that disagrees with its segment) are grouped from their events. So the first page after a
start adds up summaries instead of grouping every event.

A log held in a DuckDB database (not segments), or with events that lack a session id, is grouped
afresh on each request, as `abtest report` groups it.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from abtest.log import EventLog
from abtest.sessionize import GroupColumns, Problem, Quality, events_sql, merge_groups_sql, parse_quality, quality_sql, session_groups_sql
from contracts.columns import EVENTS_TABLE, Columns, quote, sql_string
from contracts.eventlog.groups import BIN_WIDTHS, bin_width, histogram_sql, time_bin_sql
from contracts.eventlog.reader import event_files
from contracts.eventlog.rollup import Rollup, read_rollup
from contracts.eventlog.summary import Summary, groups_sql, latency_sql, read_summary

KEPT = 4  # experiments (x recommender filters) whose groups a server worker keeps, least recently used dropped
NEW_EVENTS = "dashboard_new_events"  # temporary view of the segments to group
KEPT_GROUPS = "dashboard_kept_groups"  # the kept groups, registered from Arrow
KEPT_LATENCY = "dashboard_kept_latency"  # the kept latency histograms, registered from Arrow
NEW_GROUPS = "dashboard_new_groups"  # temporary table of the new segments' groups
RAW_GROUPS = "dashboard_raw_groups"  # temporary table of the groups of the new segments read from their events
SUMMED_GROUPS = "dashboard_summed_groups"  # temporary table of the groups of the new segments read from their summaries
ROLLUP_GROUPS = "dashboard_rollup_groups"  # temporary table of the groups of a rollup of summaries
ALL_GROUPS = "dashboard_all_groups"  # temporary table: the rollup's groups with the other new segments' added

SUMMARIES_FROM = 32 << 20  # bytes of new segments from which they are read from their summaries, not their events

Files = dict[str, tuple[int, int]]  # segment path -> (size, modification time in ns)


@dataclass(frozen=True)
class Kept:
    """What a page computed from some segments of the log.

    Attributes:
        files: The segments read, with the size and modification time they had.
        quality: `quality_sql`'s counts over them, in the order of `Problem.ALL`.
        without_session: Their events without a session id (any experiment).
        groups: Their session groups (`GroupColumns`), one row per (user, session).
        latency: Their latency histograms (`latency.histogram_sql`) in bins of `width` seconds.
        span: The first and last `ts` of the experiment's events in them (None, None without any).
        width: The latency chart's bin width for that span (`bin_width`; None without events).
    """

    files: Files
    quality: tuple[int, ...]
    without_session: int
    groups: pa.Table
    latency: pa.Table
    span: tuple[dt.datetime | None, dt.datetime | None]
    width: int | None


def _stat(paths: list[Path]) -> Files:
    out = {}
    for path in paths:
        try:
            info = path.stat()
        except OSError:  # sealed segments only vanish in a compaction: the next request sees it
            continue
        out[str(path)] = (info.st_size, info.st_mtime_ns)
    return out


class SessionGroups:
    """Kept session groups per (log, experiment, recommender filter), thread-safe, one per server worker."""

    def __init__(self, size: int = KEPT) -> None:
        self._items: OrderedDict[Any, Kept] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def read(self, log: EventLog, experiment: str, recommenders: tuple[str, ...]) -> Kept | None:
        """What the log's segments hold of the experiment, from the kept groups and the segments sealed
        since, its groups registered on `log.con` as `KEPT_GROUPS` and its latency histograms as
        `KEPT_LATENCY`; None when the log is not segments or some event lacks a session id (the
        caller reads the events itself)."""
        paths = event_files(log.source)
        if paths is None or not _is_view(log):
            return None
        files = _stat(paths)
        errors = Columns.ERROR in log.columns
        key = (log.source, experiment, errors, recommenders)
        with self._lock:
            kept = self._items.get(key)
            if kept is not None:
                self._items.move_to_end(key)
        if kept is not None and any(files.get(path) != stat for path, stat in kept.files.items()):
            kept = None  # a kept segment changed or vanished: read them all again
        new = [path for path in files if kept is None or path not in kept.files]
        if kept is None or new:
            extended = _extend(log, kept, {path: files[path] for path in new}, experiment, errors, recommenders)
            if extended is None and kept is not None:  # what was kept cannot take the new segments: read them all
                extended = _extend(log, None, files, experiment, errors, recommenders)
            if extended is None:
                return None
            kept = extended
            with self._lock:
                self._items[key] = kept
                self._items.move_to_end(key)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        if kept.without_session:
            return None
        log.con.register(KEPT_GROUPS, kept.groups)
        log.con.register(KEPT_LATENCY, kept.latency)
        return kept

    @staticmethod
    def quality(kept: Kept) -> Quality:
        """The data quality of the kept segments, as `plan` reports it."""
        return parse_quality(kept.quality)


def _is_view(log: EventLog) -> bool:
    """Whether the log's `events` is a view (over files), not a table of a DuckDB database."""
    rows = log.con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?", [EVENTS_TABLE]).fetchall()
    return [row[0] for row in rows] == ["VIEW"]


def _extend(log: EventLog, kept: Kept | None, new: Files, experiment: str, errors: bool, recommenders: tuple[str, ...]) -> Kept | None:
    """`kept` (None: nothing yet) with the segments `new` read and added; None when the new segments
    do not have the columns of the log, or when the latency chart's new bin width does not divide
    into the kept one's bins (the caller then reads every segment again).

    A new segment with a summary that agrees with it (`contracts.eventlog.summary.read_summary`) is
    read from its summary; the others from their events."""
    con = log.con
    if not new:  # every segment vanished meanwhile: nothing to add
        return kept
    con.execute("SET preserve_insertion_order = false")  # every reader aggregates or sorts what it reads
    # A few small segments are grouped from their events faster than their summaries are opened
    # and checked one by one (the demo's log: docs/dashboard.md), so summaries serve large reads only.
    summarize = errors and sum(size for size, _mtime in new.values()) >= SUMMARIES_FROM
    rollup = _rollup(new) if summarize and kept is None else None
    rolled = {str(rollup.path.parent / name) for name in rollup.members} if rollup is not None else set()
    summaries = [] if not summarize else [
        s for s in (read_summary(Path(path)) for path in new if path not in rolled) if s is not None and new[str(s.segment)] == (s.size, s.mtime_ns)
    ]
    summed = rolled | {str(s.segment) for s in summaries}
    raw = [path for path in new if path not in summed]
    read: list[Summary | Rollup] = [*([rollup] if rollup is not None else []), *summaries]
    try:
        quality = [sum(column) for column in zip(*(s.quality_of(experiment) for s in read), strict=True)] or [0] * len(Problem.ALL)
        nulls = sum(s.without_session for s in read)
        parts = []
        if summaries:
            query = groups_sql([s.path for s in summaries], experiment, recommenders)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {SUMMED_GROUPS} AS {query.sql}", query.params)
            parts.append(SUMMED_GROUPS)
        if raw:
            listing = ", ".join(sql_string(path) for path in raw)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {NEW_EVENTS} AS SELECT * FROM read_parquet([{listing}], union_by_name = true)")
            columns = {row[0] for row in con.execute(f"DESCRIBE {NEW_EVENTS}").fetchall()}
            if not set(log.columns) <= columns:  # a segment of an older format: left to the full grouping
                return None
            query = quality_sql(experiment, NEW_EVENTS)
            (counts,) = con.execute(query.sql, query.params).fetchall()  # an aggregate: one row
            quality = [a + int(b) for a, b in zip(quality, counts, strict=True)]
            ((without,),) = con.execute(f"SELECT count(*) FROM {NEW_EVENTS} WHERE {quote(Columns.SESSION)} IS NULL").fetchall()
            nulls += int(without)
            query = session_groups_sql(experiment, errors=errors, recommenders=recommenders, source=NEW_EVENTS)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {RAW_GROUPS} AS {query.sql}", query.params)
            ((grouped,),) = con.execute(f"SELECT count(*) FROM {RAW_GROUPS}").fetchall()
            if grouped or not parts:  # an empty segment (the log's template) adds nothing, not even its wider DECIMAL
                parts.append(RAW_GROUPS)
        if len(parts) == 1 and parts[0] == RAW_GROUPS:  # the events of the new segments, grouped once: one row per session
            con.execute(f"ALTER TABLE {RAW_GROUPS} RENAME TO {NEW_GROUPS}")
        elif parts:  # a session's events may lie in several segments: their rows add up
            both = " UNION ALL BY NAME ".join(f"SELECT * FROM {part}" for part in parts)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {NEW_GROUPS} AS {merge_groups_sql(f'({both})')}")
        if rollup is not None:  # one row per session already: only the sessions the other segments touch are added up
            query = groups_sql([rollup.path], experiment, recommenders)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {ROLLUP_GROUPS} AS {query.sql}", query.params)
            if parts:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {ALL_GROUPS} AS {_merge_sql(ROLLUP_GROUPS, NEW_GROUPS)}")
                con.execute(f"DROP TABLE {NEW_GROUPS}")
                con.execute(f"ALTER TABLE {ALL_GROUPS} RENAME TO {NEW_GROUPS}")
            else:
                con.execute(f"ALTER TABLE {ROLLUP_GROUPS} RENAME TO {NEW_GROUPS}")
        g = GroupColumns
        # Every valid event of the experiment is in a group here (none lacks a session id, or the
        # caller reads the events itself): the groups' first and last events are the events' span.
        ((first, last),) = con.execute(f"SELECT min({g.START}), max({g.LAST}) FROM {NEW_GROUPS}").fetchall()
        span = (first, last) if kept is None else (_extreme(min, kept.span[0], first), _extreme(max, kept.span[1], last))
        width = bin_width(span[0], span[1]) if span[0] is not None and span[1] is not None else None
        old = None if kept is None else kept.latency
        if kept is not None and kept.width is not None and width != kept.width:
            if width is None or width % kept.width:
                return None  # the new bins do not divide into the kept ones
            con.register(KEPT_LATENCY, kept.latency)
            old = con.sql(f"SELECT recommender, {time_bin_sql('bin', width)} AS bin, bucket, requests FROM {KEPT_LATENCY}").to_arrow_table()
        chart = width or BIN_WIDTHS[0]
        histograms = []
        if read:
            if any(chart % s.bins.get(experiment, chart) for s in read):
                return None  # a summary's bins do not divide the chart's (never for the bins `summary` chooses)
            query = latency_sql([s.path for s in read], experiment, chart)
            histograms.append(con.sql(query.sql, params=query.params).to_arrow_table())
        if raw:
            events = events_sql(experiment, errors, NEW_EVENTS)
            histogram = histogram_sql(events, time_bin_sql(quote(Columns.TS), chart))
            histograms.append(con.sql(histogram.sql, params=histogram.params).to_arrow_table())
        latency = pa.concat_tables(histograms) if len(histograms) > 1 else histograms[0]  # counts of a bin and bucket add up where read
        if kept is None:
            groups = con.sql(f"SELECT * FROM {NEW_GROUPS}").to_arrow_table()
            return Kept(dict(new), tuple(int(n) for n in quality), nulls, groups, latency, span, width)
        con.register(KEPT_GROUPS, kept.groups)
        groups = con.sql(_merge_sql(KEPT_GROUPS, NEW_GROUPS)).to_arrow_table()
    finally:
        con.execute(f"DROP VIEW IF EXISTS {NEW_EVENTS}")
        for table in (NEW_GROUPS, RAW_GROUPS, SUMMED_GROUPS, ROLLUP_GROUPS, ALL_GROUPS):
            con.execute(f"DROP TABLE IF EXISTS {table}")
    return Kept(
        {**kept.files, **new},
        tuple(a + int(b) for a, b in zip(kept.quality, quality, strict=True)),
        kept.without_session + nulls,
        groups,
        pa.concat_tables([old, latency]) if old is not None else latency,  # counts of a bin and bucket add up where read
        span,
        width,
    )


def _extreme(pick: Any, a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    """`pick` (min or max) of two times, either of which may be None."""
    return b if a is None else a if b is None else pick(a, b)


def _merge_sql(kept: str, new: str) -> str:
    """SQL: the groups `kept` with the groups `new` added (each one row per session); only the sessions
    that `new` touches are summed again (most of a running simulation's new events open new sessions
    or continue recent ones)."""
    g = GroupColumns
    keys = f"{quote(g.USER)}, {quote(g.SESSION)}"
    columns = ", ".join(quote(c) for c in g.ALL)
    touched = f"SELECT DISTINCT {keys} FROM {new}"
    both = f"(SELECT {columns} FROM {kept} SEMI JOIN ({touched}) USING ({keys}) UNION ALL SELECT {columns} FROM {new})"
    return f"""
        SELECT {columns} FROM {kept} ANTI JOIN ({touched}) USING ({keys})
        UNION ALL BY NAME
        {merge_groups_sql(both)}"""


def _rollup(files: Files) -> Rollup | None:
    """The newest rollup that holds only segments of `files`, unchanged (all in one directory), or None."""
    directories = {Path(path).parent for path in files}
    return read_rollup(directories.pop(), files) if len(directories) == 1 else None
