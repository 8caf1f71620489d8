"""Fixtures of the abtest tests: hand-written tiny logs and seeded synthetic logs with known effects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest
import scipy.stats

from abtest.synthetic import SyntheticExperiment, write_synthetic_log
from contracts.columns import DUCKDB_TYPES, EVENTS_TABLE, Columns

T0 = dt.datetime(2024, 1, 1)

# Chance that a correct procedure fails one binomial assertion of these tests: 1 in 10,000.
FALSE_ALARM = 1e-4


def binomial_band(rate: float, runs: int, false_alarm: float = FALSE_ALARM) -> tuple[float, float]:
    """Shares of successes in `runs` independent Bernoulli(`rate`) trials between which an assertion passes.

    The band is the exact central binomial interval, so a procedure with the nominal `rate`
    falls outside it with probability at most `false_alarm`.
    """
    lower, upper = scipy.stats.binom.interval(1 - false_alarm, runs, rate)
    return lower / runs, upper / runs


def within(rate: float, share: float, runs: int) -> bool:
    """`share` of `runs` independent experiments (or re-splits, which given the users are
    independent draws of the randomisation) is inside the exact binomial band around `rate`."""
    lower, upper = binomial_band(rate, runs)
    return lower <= share <= upper


def event(
    user: int,
    minute: float,
    message: str = "next",
    *,
    session: int | None = None,
    time: float = 1.0,
    latency: float = 0.002,
    recommender: str = "random",
    experiments: dict[str, int] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One event row, `minute` minutes after T0."""
    return {
        Columns.TS: T0 + dt.timedelta(minutes=minute),
        Columns.USER: user,
        Columns.SESSION: session,
        Columns.MESSAGE: message,
        Columns.TRACK: 1,
        Columns.TIME: time,
        Columns.RECOMMENDATION: None if message == "last" else 2,
        Columns.RECOMMENDER: recommender,
        Columns.LATENCY: latency,
        Columns.EXPERIMENTS: experiments if experiments is not None else {"exp": user % 2},
        Columns.PROPENSITY: None,
        Columns.ERROR: error,
        Columns.ERROR_MESSAGE: None if error is None else f"recommender {recommender!r} fails: {error}",
        Columns.GREEDY: None,
    }


def write_events(path: Path, rows: Sequence[dict[str, Any]], *, drop: Sequence[str] = ()) -> Path:
    """A DuckDB log with table `events` of the contract's columns (minus `drop`) holding `rows`."""
    columns = [c for c in Columns.ALL if c not in drop]
    con = duckdb.connect(str(path))
    defs = ", ".join(f'"{c}" {DUCKDB_TYPES[c]}' for c in columns)
    con.execute(f"CREATE TABLE {EVENTS_TABLE} ({defs})")
    if rows:
        con.executemany(
            f"INSERT INTO {EVENTS_TABLE} VALUES ({', '.join('?' for _ in columns)})",
            [[row[c] for c in columns] for row in rows],
        )
    con.close()
    return path


@pytest.fixture
def make_log(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write hand-written events to a fresh DuckDB file and return its path."""
    counter = iter(range(1_000_000))

    def make(rows: Sequence[dict[str, Any]], **kwargs: Any) -> Path:
        return write_events(tmp_path / f"log{next(counter)}.duckdb", rows, **kwargs)

    return make


EFFECT_EXPERIMENT = SyntheticExperiment("exp", effects=(0.0, 0.25, 0.0))


@pytest.fixture(scope="session")
def synthetic_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 60,000 events, 1,200 users, experiment 'exp': T1 listens 25% more, T2 is an A/A arm."""
    return write_synthetic_log(tmp_path_factory.mktemp("logs") / "events.duckdb", 60_000, [EFFECT_EXPERIMENT], seed=3)


@pytest.fixture(scope="session")
def synthetic_log_course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same log as `synthetic_log` without session ids and without an `experiments` table."""
    return write_synthetic_log(
        tmp_path_factory.mktemp("logs") / "course.duckdb",
        60_000,
        [EFFECT_EXPERIMENT],
        seed=3,
        session_ids=False,
        declare=False,
    )
