"""Column names and types of the event log, and how its files are recognised: a contract shared by
the service, `abtest` and training.

Renaming or retyping a column is a migration, not an edit: users' own SQL depends on these.
"""

from __future__ import annotations

from pathlib import Path


class Columns:
    """Names of the event log's columns (table or view `events`)."""

    TS = "ts"  # TIMESTAMP: when the request was served (simulated time when the client sends `ts`)
    USER = "user"  # BIGINT
    SESSION = "session"  # BIGINT, nullable: the client's session id
    MESSAGE = "message"  # VARCHAR: 'next' or 'last'
    TRACK = "track"  # BIGINT: the track just played
    TIME = "time"  # DOUBLE: fraction of `track` listened, 0..1
    RECOMMENDATION = "recommendation"  # BIGINT, null for 'last'
    RECOMMENDER = "recommender"  # VARCHAR: registry name of the recommender that served
    LATENCY = "latency"  # DOUBLE: seconds spent serving
    EXPERIMENTS = "experiments"  # MAP(VARCHAR, INTEGER): experiment name -> treatment index
    PROPENSITY = "propensity"  # DOUBLE, nullable: probability of the recommended track

    ALL = (TS, USER, SESSION, MESSAGE, TRACK, TIME, RECOMMENDATION, RECOMMENDER, LATENCY, EXPERIMENTS, PROPENSITY)


EVENTS_TABLE = "events"
MESSAGE_NEXT = "next"
MESSAGE_LAST = "last"

# DuckDB types, in column order; the service's schema.sql must agree (a test checks it).
DUCKDB_TYPES = {
    Columns.TS: "TIMESTAMP",
    Columns.USER: "BIGINT",
    Columns.SESSION: "BIGINT",
    Columns.MESSAGE: "VARCHAR",
    Columns.TRACK: "BIGINT",
    Columns.TIME: "DOUBLE",
    Columns.RECOMMENDATION: "BIGINT",
    Columns.RECOMMENDER: "VARCHAR",
    Columns.LATENCY: "DOUBLE",
    Columns.EXPERIMENTS: "MAP(VARCHAR, INTEGER)",
    Columns.PROPENSITY: "DOUBLE",
}


class ExperimentColumns:
    """Names of the columns of the log's `experiments` table: the configured split of every start."""

    EXPERIMENT = "experiment"  # VARCHAR: experiment name
    TREATMENT = "treatment"  # INTEGER: 0 is the control "C", i is "T{i}"
    RECOMMENDER = "recommender"  # VARCHAR: registry name serving (or that would serve) the treatment
    SERVING = "serving"  # BOOLEAN: whether this experiment decides who serves
    STARTED = "started"  # TIMESTAMP: when that service started, UTC

    ALL = (EXPERIMENT, TREATMENT, RECOMMENDER, SERVING, STARTED)


EXPERIMENTS_TABLE = "experiments"

EXPERIMENTS_DUCKDB_TYPES = {
    ExperimentColumns.EXPERIMENT: "VARCHAR",
    ExperimentColumns.TREATMENT: "INTEGER",
    ExperimentColumns.RECOMMENDER: "VARCHAR",
    ExperimentColumns.SERVING: "BOOLEAN",
    ExperimentColumns.STARTED: "TIMESTAMP",
}


class WorldColumns:
    """Names of the columns of the log's `worlds` table: which world every service start served.

    Training and evaluation compare it with their `--world`, so that a model is never fitted
    on a log of another world without a word.
    """

    STARTED = "started"  # TIMESTAMP: the service start, as in `experiments`
    FINGERPRINT = "fingerprint"  # VARCHAR: the world's `Catalog.fingerprint`
    PATH = "path"  # VARCHAR: the world directory the service read
    TRACKS = "tracks"  # BIGINT: tracks in its catalog

    ALL = (STARTED, FINGERPRINT, PATH, TRACKS)


WORLDS_TABLE = "worlds"

WORLDS_DUCKDB_TYPES = {
    WorldColumns.STARTED: "TIMESTAMP",
    WorldColumns.FINGERPRINT: "VARCHAR",
    WorldColumns.PATH: "VARCHAR",
    WorldColumns.TRACKS: "BIGINT",
}


def exported_tables(directory: Path) -> dict[str, str]:
    """Table name -> Parquet path or glob, when `directory` is a `botify export`; else {}.

    An export holds `events/date=YYYY-MM-DD/*.parquet` and one `<table>.parquet` per other table.
    """
    if not (directory / EVENTS_TABLE).is_dir():
        return {}
    tables = {EVENTS_TABLE: str(directory / EVENTS_TABLE / "**" / "*.parquet")}
    for table in (EXPERIMENTS_TABLE, WORLDS_TABLE):
        if (directory / f"{table}.parquet").is_file():
            tables[table] = str(directory / f"{table}.parquet")
    return tables


def log_file_kind(path: Path) -> str | None:
    """'duckdb' or 'parquet' from a file's first bytes, or None for anything else (a CSV, say)."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if head[:4] == b"PAR1":
        return "parquet"
    return "duckdb" if head[8:12] == b"DUCK" else None  # bytes 8..12 of a DuckDB database file
