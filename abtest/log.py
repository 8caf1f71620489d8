"""The event log as `abtest` reads it: opened through `contracts.eventlog.open_log`, its columns
checked, its experiments found.

The log is the contract of DESIGN.md: table or view `events` with the columns of
`contracts.columns`, and optionally a table or view `experiments` (experiment, treatment,
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
from contracts.columns import DUCKDB_TYPES, EVENTS_TABLE, EXPERIMENTS_TABLE, Columns, ExperimentColumns, quote
from contracts.eventlog import LogError, open_log
from contracts.eventlog.reader import duckdb_message

__all__ = ["EventLog", "ExperimentInfo", "duckdb_message"]

logger = logging.getLogger(__name__)

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
        try:
            connection = open_log(path)
        except LogError as error:
            raise AbtestError(f"{error}; pass --log PATH (a DuckDB file or Parquet files)") from None
        return cls(connection, str(path))

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
        missing = [name for name in ExperimentColumns.ALL if name not in columns]
        if missing:
            raise AbtestError(
                f"log {self.source!r}: table {EXPERIMENTS_TABLE!r} lacks column(s) {', '.join(missing)} "
                f"(expected: {', '.join(ExperimentColumns.ALL)})"
            )
        d = ExperimentColumns
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
