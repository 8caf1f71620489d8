"""Opening the event log (a DuckDB file or Parquet files), checking its columns and finding its experiments.

The log is the contract of DESIGN.md: table or view `events` with the columns of
`botify.columns`, and optionally a table or view `experiments` (experiment, treatment,
recommender, serving, started) that the service declares at each start. Only read access is
ever used, so a report can run while the service writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import duckdb

from abtest.errors import AbtestError
from botify.columns import DUCKDB_TYPES, EVENTS_TABLE, Columns, exported_tables, log_file_kind

logger = logging.getLogger(__name__)

EXPERIMENTS_TABLE = "experiments"

# The columns `abtest` reads; the rest of the contract (track, recommendation, propensity) is optional here.
REQUIRED_COLUMNS = (
    Columns.TS,
    Columns.USER,
    Columns.SESSION,
    Columns.MESSAGE,
    Columns.TIME,
    Columns.RECOMMENDER,
    Columns.LATENCY,
    Columns.EXPERIMENTS,
)


class DeclaredColumns:
    """Names of the `experiments` table's columns."""

    EXPERIMENT = "experiment"  # VARCHAR
    TREATMENT = "treatment"  # INTEGER: treatment index, 0 is the control
    RECOMMENDER = "recommender"  # VARCHAR: recommender serving that treatment
    SERVING = "serving"  # BOOLEAN: whether the experiment drives what is served
    STARTED = "started"  # TIMESTAMP: when the service declared it

    ALL = (EXPERIMENT, TREATMENT, RECOMMENDER, SERVING, STARTED)


_GLOB_CHARS = set("*?[")


def quote(name: str) -> str:
    """`name` as a quoted SQL identifier (column names such as `user` and `time` are keywords)."""
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class ExperimentInfo:
    """An experiment to analyse: its name and, when the log declares it, its treatments.

    Attributes:
        name: Experiment name, the key of the `experiments` map column.
        treatments: Number of treatments of the latest declaration, or None when the log declares none.
        recommenders: Treatment index -> recommender name, from the declaration (empty if undeclared).
    """

    name: str
    treatments: int | None = None
    recommenders: dict[int, str] = field(default_factory=dict)


class EventLog:
    """A read-only connection to an event log, with its columns checked.

    Open it with `EventLog.open(path)`; `path` is a DuckDB database file, a Parquet file, a
    directory of Parquet files or a glob (`logs/*.parquet`). Use it as a context manager or
    call `close()`.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str) -> None:
        self.con = con
        self.source = source
        con.execute("SET enable_progress_bar = false")  # DuckDB would draw on the terminal of long queries
        self.columns = self._check_columns()

    @classmethod
    def open(cls, path: str | Path) -> EventLog:
        """Open the log at `path` read-only; raises AbtestError naming the problem if it is not a usable log."""
        text = str(path)
        if _GLOB_CHARS & set(text):
            return cls(_open_parquet(text), text)
        p = Path(text)
        if p.is_dir():
            exported = exported_tables(p)
            if exported:  # `botify export`: its events, and the configured split of every start
                return cls(_open_parquet(exported[EVENTS_TABLE], experiments=exported.get(EXPERIMENTS_TABLE)), text)
            if not any(p.rglob("*.parquet")):
                raise AbtestError(f"log {text!r} is a directory without any .parquet file")
            return cls(_open_parquet(str(p / "**" / "*.parquet")), text)
        if not p.exists():
            raise AbtestError(f"log {text!r} does not exist; pass --log PATH (a DuckDB file or Parquet files)")
        kind = log_file_kind(p)
        if kind == "parquet":
            return cls(_open_parquet(text), text)
        if kind != "duckdb":
            raise AbtestError(f"log {text!r} is neither a DuckDB database nor a Parquet file")
        try:
            con = duckdb.connect(text, read_only=True)
        except duckdb.Error as exc:
            raise AbtestError(f"cannot open log {text!r} read-only: {duckdb_message(exc)}") from exc
        return cls(con, text)

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _relation_columns(self, name: str) -> dict[str, str] | None:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [name],
        ).fetchall()
        return {column: kind for column, kind in rows} or None

    def _check_columns(self) -> dict[str, str]:
        try:
            columns = self._relation_columns(EVENTS_TABLE)
        except duckdb.Error as exc:
            raise AbtestError(f"cannot read the log {self.source!r}: {duckdb_message(exc)}") from exc
        if columns is None:
            raise AbtestError(f"log {self.source!r} has no table or view {EVENTS_TABLE!r}")
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            expected = ", ".join(f"{name} {DUCKDB_TYPES[name]}" for name in REQUIRED_COLUMNS)
            raise AbtestError(
                f"log {self.source!r}: table {EVENTS_TABLE!r} lacks column(s) {', '.join(missing)} "
                f"(abtest needs: {expected})"
            )
        kind = columns[Columns.EXPERIMENTS]
        if not kind.upper().startswith("MAP(VARCHAR"):
            raise AbtestError(
                f"log {self.source!r}: column {Columns.EXPERIMENTS!r} has type {kind}, "
                f"must be {DUCKDB_TYPES[Columns.EXPERIMENTS]}"
            )
        if not columns[Columns.TS].upper().startswith("TIMESTAMP"):
            raise AbtestError(
                f"log {self.source!r}: column {Columns.TS!r} has type {columns[Columns.TS]}, must be TIMESTAMP"
            )
        return columns

    def declared(self) -> list[tuple[str, int, str | None, bool, object]] | None:
        """Rows of the latest declaration of every experiment, or None when the log has no `experiments` table."""
        columns = self._relation_columns(EXPERIMENTS_TABLE)
        if columns is None:
            return None
        missing = [name for name in DeclaredColumns.ALL if name not in columns]
        if missing:
            raise AbtestError(
                f"log {self.source!r}: table {EXPERIMENTS_TABLE!r} lacks column(s) {', '.join(missing)} "
                f"(expected: {', '.join(DeclaredColumns.ALL)})"
            )
        d = DeclaredColumns
        sql = f"""
            SELECT {quote(d.EXPERIMENT)}, {quote(d.TREATMENT)}, {quote(d.RECOMMENDER)}, {quote(d.SERVING)},
                   {quote(d.STARTED)}
            FROM {EXPERIMENTS_TABLE}
            QUALIFY {quote(d.STARTED)} = max({quote(d.STARTED)}) OVER (PARTITION BY {quote(d.EXPERIMENT)})
            ORDER BY {quote(d.STARTED)} DESC, {quote(d.EXPERIMENT)}, {quote(d.TREATMENT)}
        """
        return self.con.execute(sql).fetchall()

    def observed_experiments(self) -> list[str]:
        """Experiment names that occur as keys of the `experiments` map in the events (scans the log)."""
        sql = f"""
            SELECT DISTINCT unnest(map_keys({quote(Columns.EXPERIMENTS)})) AS name
            FROM {EVENTS_TABLE} ORDER BY name
        """
        return [row[0] for row in self.con.execute(sql).fetchall()]

    def resolve_experiment(self, name: str | None = None) -> ExperimentInfo:
        """The experiment to analyse: `name`, or by default the serving experiment started last.

        Without an `experiments` table the default is the only experiment found in the events;
        several (or none) is an error that lists them. A `name` that is not declared is returned
        as is (checking it against the events would cost a scan); `unknown_experiment_error`
        builds the error once an analysis finds no events for it.
        """
        declared = self.declared()
        if declared is not None:
            by_name: dict[str, list[tuple]] = {}
            for row in declared:
                by_name.setdefault(row[0], []).append(row)
            if name is None:
                serving = [row for row in declared if row[3]]
                if serving:
                    name = serving[0][0]  # rows are ordered by `started`, latest first
            if name is not None and name in by_name:
                rows = by_name[name]
                return ExperimentInfo(
                    name=name,
                    treatments=len({row[1] for row in rows}),
                    recommenders={int(row[1]): row[2] for row in rows if row[2] is not None},
                )
        if name is not None:
            return ExperimentInfo(name=name)  # undeclared: the analysis finds out whether the events know it
        observed = self.observed_experiments()
        if len(observed) == 1:
            return ExperimentInfo(name=observed[0])
        if not observed:
            raise AbtestError(f"log {self.source!r} has no events with an experiment assignment")
        raise AbtestError(
            f"log {self.source!r} has several experiments ({', '.join(observed)}) and no serving declaration; "
            "choose one with --experiment"
        )


    def unknown_experiment_error(self, name: str) -> AbtestError | None:
        """The error for an experiment that no event names, or None when some event does (scans the log)."""
        observed = self.observed_experiments()
        if name in observed:
            return None
        known = sorted(set(observed) | {row[0] for row in self.declared() or []})
        return AbtestError(
            f"unknown experiment {name!r}; the log has: {', '.join(known) if known else 'no experiments'}"
        )


def duckdb_message(exc: BaseException) -> str:
    """DuckDB's error message without the echoed SQL (the part a user can act on)."""
    text = str(exc).split("\n\nLINE ")[0].strip()
    return " ".join(text.split())


def _open_parquet(pattern: str, *, experiments: str | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE VIEW {EVENTS_TABLE} AS SELECT * FROM read_parquet({_sql_string(pattern)}, union_by_name = true)"
        )
        if experiments is not None:
            con.execute(f"CREATE VIEW {EXPERIMENTS_TABLE} AS SELECT * FROM read_parquet({_sql_string(experiments)})")
    except duckdb.Error as exc:
        con.close()
        raise AbtestError(f"cannot read Parquet log {pattern!r}: {duckdb_message(exc)}") from exc
    return con
