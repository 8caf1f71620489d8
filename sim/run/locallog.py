"""The event log of an in-process (`local:<name>`) run: the service's columns, in a DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from botify.columns import DUCKDB_TYPES, EVENTS_TABLE, Columns

LOCAL_EXPERIMENT = "local"


def write_local_log(path: Path, events: list[tuple]) -> None:
    """Append `events` (as recorded by `LocalClient`) to table `events` of the DuckDB file `path`.

    Each event records the experiment {"local": 0}, so `abtest` and training read it as they
    read the service's log.
    """
    frame = pd.DataFrame(
        events,
        columns=[Columns.TS, Columns.USER, Columns.SESSION, Columns.MESSAGE, Columns.TRACK, Columns.TIME,
                 Columns.RECOMMENDATION, Columns.RECOMMENDER, Columns.LATENCY, Columns.PROPENSITY],
    )
    frame[Columns.TS] = pd.to_datetime(frame[Columns.TS], unit="ms")
    frame[Columns.RECOMMENDATION] = frame[Columns.RECOMMENDATION].astype("Int64")
    frame[Columns.PROPENSITY] = frame[Columns.PROPENSITY].astype("Float64")
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ", ".join(f'"{name}" {kind}' for name, kind in DUCKDB_TYPES.items())
    select = ", ".join(
        f"MAP {{'{LOCAL_EXPERIMENT}': 0}}::{DUCKDB_TYPES[name]}" if name == Columns.EXPERIMENTS else f'"{name}"'
        for name in DUCKDB_TYPES
    )
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} ({columns})")
        connection.register("incoming", frame)
        connection.execute(f"INSERT INTO {EVENTS_TABLE} SELECT {select} FROM incoming")
