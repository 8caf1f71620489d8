"""The experiment page of a log of segments keeps its session groups and adds those of new segments:
its numbers stay those of the page computed afresh (and so of `abtest report`), however the log grows."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest
from flask.testing import FlaskClient

from abtest.dashboard import increments
from abtest.dashboard.app import create_app
from abtest.synthetic import SyntheticExperiment, release, write_synthetic_segments
from contracts.eventlog import rollup
from contracts.eventlog.reader import event_files
from contracts.eventlog.summary import summary_path

EXPERIMENT = SyntheticExperiment("exp", (0.0, 0.25, 0.0), latency_effects=(0.0, 2.0, 0.0))
# Filters of every kind the groups are finished with: none, a recommender, days (both day zeros), a time, open sessions.
QUERIES = ("", "?recommender=rec1", "?days=1:2", "?days=0:1&day_zero=first", "?since=2026-01-01T12:00:00", "?include_open_sessions=1&treatment=2")


def grown(log: Path, held: list[Path]) -> None:
    """Seal the first held-back segment into the log, as the service seals its next one (with its summary)."""
    release(held.pop(0), log)


def pages(client: FlaskClient) -> list[dict]:
    return [client.get(f"/experiments/exp.json{query}").get_json() for query in QUERIES]


def from_events(log: Path) -> FlaskClient:
    """A client whose pages group every event afresh, as `abtest report` does: no kept sessions, no summaries."""
    app = create_app({"LOG": str(log), "CACHE": False})
    app.extensions["dashboard_groups"] = None
    return app.test_client()


@pytest.fixture(autouse=True)
def summaries_of_small_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """These logs are small: read them from their summaries all the same, as a large log is read."""
    monkeypatch.setattr(increments, "SUMMARIES_FROM", 0)


@pytest.fixture()
def log(tmp_path: Path) -> tuple[Path, list[Path]]:
    """About 12,000 events cut by time into 8 segments (sessions cut across segments), 3 of them held back."""
    path = tmp_path / "events.duckdb"
    held = write_synthetic_segments(path, 12_000, [EXPERIMENT], segments=8, held_back=3, seed=3)
    return path, held


def test_a_grown_logs_page_equals_the_page_computed_afresh(log: tuple[Path, list[Path]]) -> None:
    path, held = log
    kept = create_app({"LOG": str(path)}).test_client()
    afresh = create_app({"LOG": str(path), "CACHE": False}).test_client()
    events = from_events(path)
    widths = {pages(kept)[0]["latency"]["bin_seconds"]}
    assert pages(kept) == pages(afresh) == pages(events)
    while held:
        grown(path, held)
        now = pages(kept)
        assert now == pages(afresh) == pages(events)
        widths.add(now[0]["latency"]["bin_seconds"])
    assert all("error" not in page for page in now) and now[0]["metrics"]
    assert len(widths) > 1  # the kept latency histograms were put into coarser bins as the log grew


def test_the_kept_groups_cover_every_segment_read_and_only_new_ones_are_grouped(log: tuple[Path, list[Path]]) -> None:
    path, held = log
    app = create_app({"LOG": str(path)})
    client = app.test_client()
    client.get("/experiments/exp.json")
    store = app.extensions["dashboard_groups"]
    (first,) = store._items.values()
    grown(path, held)
    client.get("/experiments/exp.json")

    (second,) = store._items.values()
    assert set(second.files) == {str(p) for p in event_files(path)} > set(first.files)
    assert second.groups.num_rows > first.groups.num_rows


def test_a_compacted_or_shrunk_log_is_read_again(log: tuple[Path, list[Path]]) -> None:
    path, held = log
    kept = create_app({"LOG": str(path)}).test_client()
    afresh = create_app({"LOG": str(path), "CACHE": False}).test_client()
    before = pages(kept)
    # Two kept segments become one (a compaction): their events are the same, their files are not.
    first, second = event_files(path)[1:3]
    merged = first.with_name("0000000000000000002-compacted.parquet.tmp")
    duckdb.execute(f"COPY (SELECT * FROM read_parquet(['{first}', '{second}'])) TO '{merged}' (FORMAT parquet)")
    first.unlink()
    os.replace(merged, second)

    assert pages(kept) == pages(afresh) == before
    event_files(path)[-1].unlink()  # a segment gone (as after a reset): the kept sums hold events no longer there
    assert pages(kept) == pages(afresh) != before


def test_a_log_with_events_without_a_session_id_is_grouped_as_the_report_groups_it(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    held = write_synthetic_segments(path, 6_000, [EXPERIMENT], segments=4, held_back=1, seed=4, session_ids=False)
    kept = create_app({"LOG": str(path)}).test_client()
    afresh = create_app({"LOG": str(path), "CACHE": False}).test_client()
    assert pages(kept) == pages(afresh)
    grown(path, held)
    assert pages(kept) == pages(afresh)


def test_pages_read_from_rollups_and_summaries_are_the_pages_of_the_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollup, "MIN_NEW", 2)  # rollups of this small log: 2, then 4 segments, the rest in summaries
    path = tmp_path / "events.duckdb"
    held = write_synthetic_segments(path, 12_000, [EXPERIMENT], segments=8, held_back=2, seed=3)
    used = []
    real = increments._rollup
    monkeypatch.setattr(increments, "_rollup", lambda files: used.append(real(files)) or used[-1])
    kept = create_app({"LOG": str(path)}).test_client()
    first = create_app({"LOG": str(path), "CACHE": False}).test_client()
    events = from_events(path)

    assert pages(first) == pages(kept) == pages(events)
    assert used and all(r is not None and len(r.members) == 6 for r in used)  # every segment but the template, through the rollup
    while held:
        grown(path, held)
        assert pages(first) == pages(kept) == pages(events)


@pytest.mark.parametrize("change", ["rewritten", "swapped"])
def test_a_summary_that_disagrees_with_its_segment_is_not_used(log: tuple[Path, list[Path]], change: str) -> None:
    path, _ = log
    one, other = event_files(path)[1:3]
    before = pages(from_events(path))
    if change == "rewritten":  # the segment loses half its rows after its summary was written
        rows = duckdb.execute(f"SELECT count(*) FROM read_parquet('{one}')").fetchone()[0]
        duckdb.execute(f"COPY (SELECT * FROM read_parquet('{one}') LIMIT {rows // 2}) TO '{one}.tmp' (FORMAT parquet)")
        os.replace(f"{one}.tmp", one)
    else:  # another segment's summary under this one's name: sums that are not this segment's
        os.replace(summary_path(other), summary_path(one))

    assert pages(create_app({"LOG": str(path), "CACHE": False}).test_client()) == pages(from_events(path))
    assert (pages(from_events(path)) != before) == (change == "rewritten")


def test_a_small_log_is_grouped_from_its_events_without_opening_a_summary(log: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = log
    monkeypatch.setattr(increments, "SUMMARIES_FROM", 32 << 20)  # the default: these segments hold far less
    opened: list[Path] = []
    monkeypatch.setattr(increments, "read_summary", lambda segment: opened.append(segment))
    monkeypatch.setattr(increments, "_rollup", lambda files: opened.append(Path("rollup")))
    assert pages(create_app({"LOG": str(path), "CACHE": False}).test_client()) == pages(from_events(path))
    assert opened == []
