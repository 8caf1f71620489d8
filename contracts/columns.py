"""The event log's schema, declared once: tables, column names, DuckDB types and the format version.

The service writes these tables, `abtest` and training read them, and users' own SQL depends on
them: renaming or retyping a column is a migration (bump `FORMAT_VERSION`), not an edit. The
DDL (`create_table_sql`) and the Arrow schemas of the segments are derived from here.
"""

from __future__ import annotations

FORMAT_VERSION = 3  # 2: the worlds table; 3: events.error, events.error_message (nullable; older logs lack them)


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
    ERROR = "error"  # VARCHAR, nullable: the rule the treatment's recommender broke (`recommenders.answers.ERROR_KINDS`)
    ERROR_MESSAGE = "error_message"  # VARCHAR, nullable: that broken rule's message
    GREEDY = "greedy"  # BIGINT, nullable: the track the treatment's policy would have served without exploring

    ALL = (TS, USER, SESSION, MESSAGE, TRACK, TIME, RECOMMENDATION, RECOMMENDER, LATENCY, EXPERIMENTS, PROPENSITY, ERROR, ERROR_MESSAGE, GREEDY)
    # Columns added after the first format: readers must accept logs without them (read as NULL).
    ADDED = (ERROR, ERROR_MESSAGE, GREEDY)


class RecToolsColumns:
    """Names of the interactions table RecTools' `Dataset.construct` reads (its `rectools.Columns`).

    `botify export --format rectools` writes the log's playbacks under these names: a user, a
    track, the fraction listened as the weight and the time of the event.
    """

    USER = "user_id"  # the log's `user`
    ITEM = "item_id"  # the log's `track`
    WEIGHT = "weight"  # the log's `time`: fraction listened, 0..1
    DATETIME = "datetime"  # the log's `ts`

    ALL = (USER, ITEM, WEIGHT, DATETIME)


EVENTS_TABLE = "events"
MESSAGE_NEXT = "next"
MESSAGE_LAST = "last"

# DuckDB types, in column order.
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
    Columns.ERROR: "VARCHAR",
    Columns.ERROR_MESSAGE: "VARCHAR",
    Columns.GREEDY: "BIGINT",
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


class TruthColumns:
    """Names of the columns of a truth file: every session of an experiment's listeners replayed
    under every arm (`python -m sim.run ... truth`), written beside the log (`contracts.truth`).

    A session counts as the log counts it, so a metric computed from these rows and from the
    log's events agrees for the arm a listener was assigned to.
    """

    EXPERIMENT = "experiment"  # VARCHAR: experiment name
    ARM = "arm"  # INTEGER: the treatment every listener was served in this replay
    USER = "user"  # BIGINT
    SESSION = "session"  # BIGINT: the simulator's session id
    START = "start"  # TIMESTAMP: the session's first event (simulated time)
    TRACKS = "tracks"  # BIGINT: events of the session ('next' and 'last'), as `abtest` counts tracks
    TIME = "time"  # DOUBLE: sum of the `time` of those events, as `abtest` sums time

    ALL = (EXPERIMENT, ARM, USER, SESSION, START, TRACKS, TIME)


TRUTH_TABLE = "truth"

TRUTH_DUCKDB_TYPES = {
    TruthColumns.EXPERIMENT: "VARCHAR",
    TruthColumns.ARM: "INTEGER",
    TruthColumns.USER: "BIGINT",
    TruthColumns.SESSION: "BIGINT",
    TruthColumns.START: "TIMESTAMP",
    TruthColumns.TRACKS: "BIGINT",
    TruthColumns.TIME: "DOUBLE",
}


TABLE_TYPES: dict[str, dict[str, str]] = {
    EVENTS_TABLE: DUCKDB_TYPES,
    EXPERIMENTS_TABLE: EXPERIMENTS_DUCKDB_TYPES,
    WORLDS_TABLE: WORLDS_DUCKDB_TYPES,
}


def quote(name: str) -> str:
    """`name` as a quoted SQL identifier (column names such as `user` and `time` are keywords)."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(text: str) -> str:
    """`text` as an SQL string literal, for the places DuckDB takes no parameter (paths in views and COPY)."""
    return "'" + text.replace("'", "''") + "'"


def create_table_sql(table: str) -> str:
    """`CREATE TABLE table (...)` with the declared columns and types, in order."""
    columns = ", ".join(f"{quote(name)} {kind}" for name, kind in TABLE_TYPES[table].items())
    return f"CREATE TABLE {table} ({columns})"
