"""The event log of an in-process (`local:<name>`) run: the service's columns, in a DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from botify.columns import DUCKDB_TYPES, EVENTS_TABLE, WORLDS_DUCKDB_TYPES, WORLDS_TABLE, Columns
from recommenders.catalog import Catalog

LOCAL_EXPERIMENT = "local"


def write_local_log(path: Path, events: list[tuple], world: Path) -> None:
    """Append `events` (as recorded by `LocalClient`) to table `events` of the DuckDB file `path`.

    Each event records the experiment {"local": 0}, so `abtest` and training read it as they
    read the service's log; table `worlds` records the run's `world` as the service records its own.
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
        connection.execute(f"CREATE TABLE IF NOT EXISTS {WORLDS_TABLE} ({', '.join(f'{c} {t}' for c, t in WORLDS_DUCKDB_TYPES.items())})")
        catalog = Catalog(world)
        connection.execute(
            f"INSERT INTO {WORLDS_TABLE} VALUES (now()::TIMESTAMP, ?, ?, ?)",
            [catalog.fingerprint, str(world.absolute()), catalog.n_tracks],
        )
