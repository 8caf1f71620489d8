"""One definition of a session's length: the summary counts what the log (and so `abtest`) counts."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from contracts.catalog import Catalog
from contracts.eventlog import init_log, open_log
from contracts.eventlog.writer import record_start, world_row
from contracts.sessions import FIRST_TRACK_TIME, logged_time, logged_tracks
from sim.config import EnvConfig
from sim.run.replay import simulate
from sim.run.shards import ClientSpec
from sim.run.summary import summarize


def test_logged_counts_add_the_first_track() -> None:
    assert logged_tracks(3) == 4
    assert logged_time(2.5) == 2.5 + FIRST_TRACK_TIME
    assert logged_time(np.array([0.0, 1.5])).tolist() == [1.0, 2.5]


def test_summary_counts_what_the_log_counts(small_world_dir: Path, tmp_path: Path) -> None:
    config = EnvConfig().model_copy(update={"world": small_world_dir})
    log = tmp_path / "events.duckdb"
    declared = [{"experiment": "local", "treatment": 0, "recommender": "sticky_artist", "serving": True}]
    record_start(init_log(log), declared, time.time_ns() // 1000, world_row(Catalog(small_world_dir)))
    records = simulate(config, 3, [1], 150, ClientSpec("local", "sticky_artist", log=log))

    (row,) = summarize(records, np.full(len(records), "sticky_artist", dtype=object))
    with open_log(log) as connection:
        events, total_time = connection.execute("SELECT count(*), sum(time) FROM events").fetchone()
    assert row.sessions == len(records) == 150
    assert row.mean_tracks * row.sessions == pytest.approx(events)
    assert row.mean_time * row.sessions == pytest.approx(total_time)
