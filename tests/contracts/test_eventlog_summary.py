"""Each sealed segment's summary holds its sessions' sums, quality counts and latency histograms,
and is believed only while its segment is the one it was written for; rollups add summaries up."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from contracts.eventlog import EventWriter, init_log
from contracts.eventlog import rollup as rollup_module
from contracts.eventlog import summary as summary_module
from contracts.eventlog.groups import Problem
from contracts.eventlog.layout import LogLayout
from contracts.eventlog.rollup import read_rollup
from contracts.eventlog.summary import METADATA_KEY, groups_sql, latency_sql, read_summary, summary_path
from contracts.eventlog.writer import Row, make_row

T0 = dt.datetime(2026, 1, 1, 12, 0)


def event(user: int, session: int | None, message: str, seconds: float, time: float, arm: int, *, latency: float = 0.002,
          recommender: str = "top-pop") -> Row:
    ts = int((T0 + dt.timedelta(seconds=seconds)).timestamp() * 1_000_000)
    return make_row({
        "ts": ts, "user": user, "session": session, "message": message, "track": 1, "time": time,
        "recommendation": 2 if message == "next" else None, "recommender": recommender, "latency": latency,
        "experiments": (arm,), "propensity": None,
    })


# User 1: one completed session of three events (1.0 + 0.5 + 0.25 listened), arm 1, served by two
# recommenders; user 2: an open session of two events, arm 0; one event with time 1.5 (a problem).
EVENTS = [
    event(1, 10, "next", 0, 1.0, 1),
    event(1, 10, "next", 30, 0.5, 1, recommender="dssm"),
    event(1, 10, "last", 60, 0.25, 1),
    event(2, 20, "next", 10, 1.0, 0, latency=0.004),
    event(2, 20, "next", 20, 0.5, 0, latency=0.004),
    event(2, 20, "next", 40, 1.5, 0),
]


def sealed(tmp_path: Path, rows: list[Row] = EVENTS) -> Path:
    layout = init_log(tmp_path / "events.duckdb")
    writer = EventWriter(layout, ["exp"], flush_window=3600.0)
    writer.extend(rows)
    segment = writer.flush()
    writer.close()
    assert segment is not None
    return segment


def test_a_sealed_segment_has_a_summary_of_its_sessions_sums(tmp_path: Path) -> None:
    segment = sealed(tmp_path)

    summary = read_summary(segment)
    assert summary is not None and summary.rows == 6 and summary.without_session == 0
    assert summary.quality_of("exp") == tuple(1 if problem == Problem.TIME else 0 for problem in Problem.ALL)
    query = groups_sql([summary.path], "exp", ("dssm",))
    rows = duckdb.execute(f"SELECT user, session, arm, tracks, time, requests, latency_sum, latency_n, served FROM ({query.sql}) ORDER BY user",
                          query.params).fetchall()
    assert rows == [
        (1, 10, 1, 3, Decimal("1.750000000"), 2, Decimal("0.006000000"), 3, True),
        (2, 20, 0, 2, Decimal("1.500000000"), 2, Decimal("0.008000000"), 2, False),
    ]
    query = latency_sql([summary.path], "exp", 3600)
    histogram = duckdb.execute(f"SELECT recommender, bin, sum(requests) FROM ({query.sql}) GROUP BY ALL ORDER BY ALL", query.params).fetchall()
    assert histogram == [("dssm", T0, 1), ("top-pop", T0, 4)]


@pytest.mark.parametrize("change", ["mtime", "size", "rows", "format", "segment", "missing"])
def test_a_summary_that_disagrees_with_its_segment_is_not_believed(tmp_path: Path, change: str) -> None:
    segment = sealed(tmp_path)
    path = summary_path(segment)
    table = pq.read_table(path)
    metadata = json.loads(table.schema.metadata[METADATA_KEY])
    info = segment.stat()
    if change == "mtime":
        os.utime(segment, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    elif change == "size":
        with segment.open("ab") as handle:
            handle.write(b"\0")
        os.utime(segment, ns=(info.st_atime_ns, info.st_mtime_ns))
    elif change == "missing":
        path.unlink()
    else:
        metadata.update({"rows": metadata["rows"] + 1} if change == "rows" else {"format": 0} if change == "format" else {"segment": "other.parquet"})
        pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()}), path)

    assert read_summary(segment) is None


def test_a_summary_that_cannot_be_written_leaves_the_segment_sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(segment: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(summary_module, "summarize", broken)
    with caplog.at_level(logging.ERROR):
        segment = sealed(tmp_path)

    assert segment.is_file() and not summary_path(segment).exists()
    assert duckdb.execute(f"SELECT count(*) FROM read_parquet('{segment}')").fetchone() == (6,)
    assert any("summing up" in record.getMessage() for record in caplog.records)


def test_summaries_are_rolled_up_once_enough_are_outside_a_rollup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollup_module, "MIN_NEW", 2)
    layout = init_log(tmp_path / "events.duckdb")
    writer = EventWriter(layout, ["exp"], flush_window=3600.0)
    segments = []
    for i in range(4):  # the same two sessions continue in every segment
        writer.extend([event(1, 10, "next", 100 * i, 0.5, 1), event(2, 20, "next", 100 * i + 1, 0.25, 0)])
        segments.append(writer.flush())
    writer.close()
    directory = LogLayout.of(layout.path).directory("events")
    files = {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.glob("*.parquet")}

    rollup = read_rollup(directory, files)
    assert rollup is not None and set(rollup.members) == {s.name for s in segments if s is not None}
    query = groups_sql([rollup.path], "exp")
    rows = duckdb.execute(f"SELECT user, tracks, time FROM ({query.sql}) ORDER BY user", query.params).fetchall()
    assert rows == [(1, 4, Decimal("2.000000000")), (2, 4, Decimal("1.000000000"))]  # one row per session: the four segments added up

    changed = segments[1]
    assert changed is not None
    info = changed.stat()
    os.utime(changed, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    files[str(changed)] = (changed.stat().st_size, changed.stat().st_mtime_ns)
    newest = read_rollup(directory, files)
    assert newest is None or changed.name not in newest.members
