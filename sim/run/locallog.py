"""The event log of an in-process (`local:<name>`) run, written as botify writes its own.

A local run is one experiment, "local", with a single treatment. Its events, start record and
world go through botify's own log code (Parquet segments behind views in LOG), so `abtest`,
training and users' SQL read it exactly as they read a service's log, and a later run appends.
"""

from __future__ import annotations

import time
from pathlib import Path

from contracts.catalog import Catalog

LOCAL_EXPERIMENT = "local"


def write_local_log(path: Path, events: list[tuple], world: Path, recommender: str) -> None:
    """Append `events` (as recorded by `LocalClient`) to the event log at `path`, creating it if needed.

    Raises `botify.eventlog.LogError` when `path` cannot be a botify log (a directory, another
    DuckDB database).
    """
    from contracts.eventlog.layout import init_log
    from contracts.eventlog.writer import EventWriter, record_start, world_row

    layout = init_log(path)
    declared = [{"experiment": LOCAL_EXPERIMENT, "treatment": 0, "recommender": recommender, "serving": True}]
    record_start(layout, declared, time.time_ns() // 1000, world_row(Catalog(world)))
    writer = EventWriter(layout, [LOCAL_EXPERIMENT], flush_window=3600.0, flush_events=len(events) + 1)
    # LocalClient records ts in epoch ms; the log's rows carry epoch us and the treatment tuple.
    writer.extend(
        (ts * 1000, user, session, message, track, listened, answer, name, latency, (0,), propensity)
        for ts, user, session, message, track, listened, answer, name, latency, propensity in events
    )
    try:
        writer.flush()  # here, unlike close(), a failure to seal raises
    finally:
        writer.close()
