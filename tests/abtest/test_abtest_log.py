"""Opening logs (DuckDB, Parquet file/dir/glob), checking columns, and choosing the experiment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from abtest.errors import AbtestError
from abtest.log import EventLog
from contracts.columns import EXPERIMENTS_TABLE, Columns
from tests.abtest.conftest import event


def declare(path: Path, rows: list[tuple]) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"CREATE TABLE {EXPERIMENTS_TABLE} (experiment VARCHAR, treatment INTEGER, recommender VARCHAR, "
            "serving BOOLEAN, started TIMESTAMP)"
        )
        con.executemany(f"INSERT INTO {EXPERIMENTS_TABLE} VALUES (?, ?, ?, ?, ?)", rows)


def test_opens_a_duckdb_log_read_only(make_log: Callable[..., Path]) -> None:
    path = make_log([event(1, 0, "last")])

    with EventLog.open(path) as log:
        assert set(Columns.ALL) <= set(log.columns)
        with pytest.raises(duckdb.Error):
            log.con.execute("DELETE FROM events")


@pytest.mark.parametrize("form", ["file", "dir", "glob"])
def test_opens_parquet_logs(tmp_path: Path, make_log: Callable[..., Path], form: str) -> None:
    source = make_log([event(1, 0, "last"), event(2, 0, "last")])
    (tmp_path / "pq").mkdir()
    with duckdb.connect(str(source), read_only=True) as con:
        con.execute(f"COPY (SELECT * FROM events WHERE \"user\" = 1) TO '{tmp_path}/pq/a.parquet' (FORMAT parquet)")
        con.execute(f"COPY (SELECT * FROM events WHERE \"user\" = 2) TO '{tmp_path}/pq/b.parquet' (FORMAT parquet)")
    target = {"file": tmp_path / "pq" / "a.parquet", "dir": tmp_path / "pq", "glob": f"{tmp_path}/pq/*.parquet"}[form]

    with EventLog.open(target) as log:
        users = log.con.execute('SELECT count(DISTINCT "user") FROM events').fetchone()[0]

    assert users == (1 if form == "file" else 2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"user,ts\n1,2\n" * 10, "neither a DuckDB database nor a Parquet file"),
        (b"", "neither a DuckDB database nor a Parquet file"),
    ],
)
def test_rejects_files_that_are_not_logs(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(content)

    with pytest.raises(AbtestError, match=message):
        EventLog.open(path)


def test_rejects_missing_paths_and_empty_dirs(tmp_path: Path) -> None:
    with pytest.raises(AbtestError, match="does not exist"):
        EventLog.open(tmp_path / "nope.duckdb")
    with pytest.raises(AbtestError, match="without any .parquet"):
        EventLog.open(tmp_path)
    with pytest.raises(AbtestError, match="cannot read Parquet"):
        EventLog.open(f"{tmp_path}/*.parquet")


def test_rejects_a_database_without_events(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE plays (x INTEGER)")

    with pytest.raises(AbtestError, match="no table or view 'events'"):
        EventLog.open(path)


def test_names_missing_columns(make_log: Callable[..., Path]) -> None:
    path = make_log([], drop=[Columns.LATENCY, Columns.SESSION])

    with pytest.raises(AbtestError, match=r"lacks column\(s\) session, latency"):
        EventLog.open(path)


def test_rejects_a_wrongly_typed_experiments_column(tmp_path: Path) -> None:
    path = tmp_path / "typed.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            'CREATE VIEW events AS SELECT now()::TIMESTAMP AS ts, 1 AS "user", NULL::BIGINT AS session, '
            "'last' AS message, 1.0 AS time, 'x' AS recommender, 0.1 AS latency, 'exp=1' AS experiments"
        )

    with pytest.raises(AbtestError, match="experiments' has type VARCHAR"):
        EventLog.open(path)


def test_default_experiment_is_the_serving_one_started_last(make_log: Callable[..., Path]) -> None:
    path = make_log([event(1, 0, "last", experiments={"old": 0, "new": 1, "shadow": 0})])
    declare(
        path,
        [
            ("old", 0, "random", True, dt.datetime(2024, 1, 1)),
            ("old", 1, "top_pop", True, dt.datetime(2024, 1, 1)),
            ("new", 0, "sticky_artist", True, dt.datetime(2024, 2, 1)),
            ("new", 1, "dssm", True, dt.datetime(2024, 2, 1)),
            ("new", 2, "i2i", True, dt.datetime(2024, 2, 1)),
            ("shadow", 0, "random", False, dt.datetime(2024, 3, 1)),
            ("shadow", 1, "random", False, dt.datetime(2024, 3, 1)),
        ],
    )

    with EventLog.open(path) as log:
        info = log.resolve_experiment()
        old = log.resolve_experiment("old")

    assert (info.name, info.treatments, info.recommenders) == ("new", 3, {0: "sticky_artist", 1: "dssm", 2: "i2i"})
    assert (old.name, old.treatments) == ("old", 2)


def test_latest_declaration_wins(make_log: Callable[..., Path]) -> None:
    path = make_log([event(1, 0, "last")])
    declare(
        path,
        [("exp", t, "random", True, dt.datetime(2024, 1, 1)) for t in range(4)]
        + [("exp", t, "dssm", True, dt.datetime(2024, 1, 2)) for t in range(2)],
    )

    with EventLog.open(path) as log:
        info = log.resolve_experiment()

    assert (info.treatments, info.recommenders) == (2, {0: "dssm", 1: "dssm"})


def test_without_declarations_the_only_experiment_is_the_default(make_log: Callable[..., Path]) -> None:
    single = make_log([event(1, 0, "last"), event(2, 0, "last")])
    several = make_log([event(1, 0, "last", experiments={"a": 0}), event(2, 0, "last", experiments={"b": 1})])
    none = make_log([event(1, 0, "last", experiments={})])

    with EventLog.open(single) as log:
        assert log.resolve_experiment().name == "exp"
    with EventLog.open(several) as log, pytest.raises(AbtestError, match=r"several experiments \(a, b\)"):
        log.resolve_experiment()
    with EventLog.open(none) as log, pytest.raises(AbtestError, match="no events with an experiment"):
        log.resolve_experiment()


def test_unknown_experiment_error_lists_the_known_ones(make_log: Callable[..., Path]) -> None:
    path = make_log([event(1, 0, "last", experiments={"a": 0, "b": 1})])

    with EventLog.open(path) as log:
        error = log.unknown_experiment_error("c")
        known = log.unknown_experiment_error("a")

    assert "unknown experiment 'c'; the log has: a, b" in str(error)
    assert known is None
