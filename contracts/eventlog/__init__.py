"""The event log on disk: its layout, its one writer and its one reader.

Submodules: `layout` (LOG, segment paths, views, `init_log`), `writer` (buffer events and seal
them as Parquet segments), `reader` (`open_log`: any form of a log, read-only), `export`
(date-partitioned Parquet, compaction), `groups` (a session's sums, the checks of a row, latency
buckets: the SQL that the seal and `abtest` share), `summary` (each sealed segment's summary),
`rollup` (summaries added up, and `seal`: a segment with its summary). The tables and columns are declared in `contracts.columns`.
"""

from __future__ import annotations

from contracts.eventlog.layout import LogError, LogLayout, init_log
from contracts.eventlog.reader import open_log
from contracts.eventlog.writer import EventWriter

__all__ = ["EventWriter", "LogError", "LogLayout", "init_log", "open_log"]
