"""Sessions from events: by session id, closed by 'last' (two SQL plans), filters, against the course's pandas loop."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from abtest.errors import AbtestError
from abtest.sessionize import (
    DAY_ZERO,
    LIST_PLAN_MAX_COST,
    Filters,
    SessionColumns,
    Strategy,
    choose_strategy,
    plan_sql,
    sessions_sql,
)
from tests.abtest.conftest import T0, event

S = SessionColumns


def sessions(path: Path, strategy: str, filters: Filters | None = None, experiment: str = "exp") -> pd.DataFrame:
    query = sessions_sql(experiment, strategy, filters)
    with duckdb.connect(str(path), read_only=True) as con:
        frame = con.execute(query.sql, query.params).df()
    return frame.sort_values([S.USER, S.START]).reset_index(drop=True)


COURSE_EVENTS = [
    # user 1: two sessions closed by 'last'
    event(1, 0, time=0.5, latency=0.001),
    event(1, 3, time=1.0, latency=0.003),
    event(1, 6, "last", time=0.2, latency=0.002),
    event(1, 60, time=0.4),
    event(1, 63, "last", time=0.6),
    # user 2: one closed session, then one still open
    event(2, 1, "last", time=0.9),
    event(2, 100, time=0.3),
]


@pytest.mark.parametrize("strategy", [Strategy.LAST_LIST, Strategy.LAST_WINDOW])
def test_last_closes_sessions_and_open_ones_are_dropped(make_log: Callable[..., Path], strategy: str) -> None:
    path = make_log(COURSE_EVENTS)

    frame = sessions(path, strategy)

    assert list(frame[S.USER]) == [1, 1, 2]
    assert list(frame[S.TRACKS]) == [3, 2, 1]
    np.testing.assert_allclose(frame[S.TIME], [1.7, 1.0, 0.9])
    np.testing.assert_allclose(frame[S.LATENCY], [2.0, 2.0, 2.0])  # ms
    np.testing.assert_allclose(frame[S.LATENCY_TOTAL], [6.0, 4.0, 2.0])
    assert list(frame[S.ARM]) == [1, 1, 0]
    assert frame[S.START].iloc[1] == T0 + dt.timedelta(minutes=60)


@pytest.mark.parametrize("strategy", [Strategy.LAST_LIST, Strategy.LAST_WINDOW])
def test_include_open_keeps_the_unfinished_session(make_log: Callable[..., Path], strategy: str) -> None:
    path = make_log(COURSE_EVENTS)

    frame = sessions(path, strategy, Filters(include_open=True))

    assert list(frame[S.TRACKS]) == [3, 2, 1, 1]


@pytest.mark.parametrize("strategy", [Strategy.LAST_LIST, Strategy.LAST_WINDOW])
def test_event_at_the_same_time_as_last_belongs_to_its_session(make_log: Callable[..., Path], strategy: str) -> None:
    path = make_log([event(1, 5, "last"), event(1, 5, time=0.25), event(1, 9, "last")])

    frame = sessions(path, strategy)

    assert list(frame[S.TRACKS]) == [2, 1]


def test_session_ids_group_overlapping_sessions(make_log: Callable[..., Path]) -> None:
    rows = [  # user 1 runs sessions 10 and 11 at once (interleaved in time)
        event(1, 0, session=10, time=0.1),
        event(1, 1, session=11, time=0.2),
        event(1, 2, session=10, time=0.3),
        event(1, 3, "last", session=11, time=0.4),
        event(1, 4, "last", session=10, time=0.5),
    ]
    path = make_log(rows)

    frame = sessions(path, Strategy.SESSION_ID)

    assert list(frame[S.TRACKS]) == [3, 2]
    np.testing.assert_allclose(frame[S.TIME], [0.9, 0.6])


def test_events_outside_the_experiment_are_ignored(make_log: Callable[..., Path]) -> None:
    rows = [event(1, 0, "last", experiments={}), event(1, 5, "last", experiments={"other": 1})]
    path = make_log([*rows, event(2, 0, "last")])

    frame = sessions(path, Strategy.LAST_LIST)

    assert list(frame[S.USER]) == [2]


def test_filters_by_time_days_and_recommender(make_log: Callable[..., Path]) -> None:
    day = 24 * 60
    rows = [
        event(1, 10, "last", recommender="a"),
        event(1, day + 10, "last", recommender="b"),
        event(1, 2 * day + 10, recommender="a"),
        event(1, 2 * day + 13, "last", recommender="b"),
    ]
    path = make_log(rows)

    since = sessions(path, Strategy.LAST_LIST, Filters(since=T0 + dt.timedelta(days=1)))
    until = sessions(path, Strategy.LAST_LIST, Filters(until=T0 + dt.timedelta(days=1)))
    days = sessions(path, Strategy.LAST_WINDOW, Filters(days=(1, 2), day_zero=None))  # day 0: the first event's
    dated = sessions(path, Strategy.LAST_LIST, Filters(days=(2, 3), day_zero=(T0 - dt.timedelta(days=1)).date()))
    service = sessions(path, Strategy.LAST_LIST, Filters(days=(1, 4)))  # the default day zero, 2025-12-31
    served_by_a = sessions(path, Strategy.LAST_LIST, Filters(recommenders=("a",)))
    served_by_either = sessions(path, Strategy.LAST_WINDOW, Filters(recommenders=("b", "a")))

    assert len(since) == 2 and len(until) == 1
    assert days[S.START].tolist() == [pd.Timestamp(T0 + dt.timedelta(days=1, minutes=10))]
    assert dated[S.START].tolist() == days[S.START].tolist()
    assert len(service) == 0  # this log's ts are in 2024, long before the service's day 1
    assert served_by_a[S.TRACKS].tolist() == [1, 2]
    assert served_by_either[S.TRACKS].tolist() == [1, 1, 2]


def test_filters_validate_their_ranges() -> None:
    with pytest.raises(AbtestError, match="since"):
        Filters(since=T0, until=T0)
    with pytest.raises(AbtestError, match="days == 3:1, the first day must be before the last"):
        Filters(days=(3, 1))
    with pytest.raises(AbtestError, match="days == 2:2"):
        Filters(days=(2, 2))  # [2, 2) is empty
    assert Filters(days=(1, 8), recommenders=("dssm",)).describe() == "days 1:8 (day 0 = 2025-12-31); recommender dssm"
    assert Filters().describe() == ""
    everything = Filters(since=T0, until=T0 + dt.timedelta(hours=36), days=(0.5, 2), day_zero=None, recommenders=("a", "b"), include_open=True)
    assert everything.describe() == (
        "since 2024-01-01 00:00:00; until 2024-01-02 12:00:00; days 0.5:2 (day 0 = the first event's day); "
        "recommender a, b; open sessions included"
    )


def test_default_day_zero_is_the_services() -> None:
    from botify.config import ServiceConfig

    assert DAY_ZERO == ServiceConfig.model_fields["day_zero"].default


def test_choose_strategy() -> None:
    assert choose_strategy(0, 0.0) == Strategy.SESSION_ID
    assert choose_strategy(10, LIST_PLAN_MAX_COST) == Strategy.LAST_LIST
    assert choose_strategy(10, LIST_PLAN_MAX_COST + 1) == Strategy.LAST_WINDOW
    with pytest.raises(AbtestError, match="strategy == 'by-magic', must be one of session-id, last-list, last-window"):
        sessions_sql("exp", "by-magic")


def test_plan_counts_events_without_session_and_the_list_cost(make_log: Callable[..., Path]) -> None:
    path = make_log([*COURSE_EVENTS, event(3, 0, "last", session=5)])
    query = plan_sql("exp")

    with duckdb.connect(str(path), read_only=True) as con:
        events, cost = con.execute(query.sql, query.params).fetchone()

    assert events == 7
    assert cost == pytest.approx((5 * 2 + 2 * 1) / 7)  # user 1: 5 events x 2 lasts, user 2: 2 x 1


def course_sessionize(events: pd.DataFrame) -> pd.DataFrame:
    """The course's row-by-row pandas sessionizer (reference implementation, kept deliberately naive)."""
    out = []
    for user, user_events in events.sort_values(["ts"], kind="stable").groupby("user", sort=True):
        session = None
        for row in user_events.itertuples():
            if session is None:
                session = {"user": user, "start": row.ts, "tracks": 0, "time": 0.0, "latencies": []}
            session["tracks"] += 1
            session["time"] += row.time
            session["latencies"].append(row.latency * 1000)
            if row.message == "last":
                session["latency_ms"] = float(np.mean(session.pop("latencies")))
                out.append(session)
                session = None
    return pd.DataFrame(out)


ROUNDING = 0.5e-9  # the largest rounding of one value to exact.DECIMAL


def test_sql_plans_agree_with_the_course_sessionizer(synthetic_log_course: Path) -> None:
    with duckdb.connect(str(synthetic_log_course), read_only=True) as con:
        events = con.execute("SELECT ts, \"user\", message, \"time\", latency FROM events WHERE \"user\" < 60").df()
    expected = course_sessionize(events).sort_values(["user", "start"]).reset_index(drop=True)

    for strategy in (Strategy.LAST_LIST, Strategy.LAST_WINDOW):
        frame = sessions(synthetic_log_course, strategy)
        frame = frame[frame[S.USER] < 60].reset_index(drop=True)
        assert len(frame) == len(expected)
        assert (frame[S.TRACKS].to_numpy() == expected["tracks"].to_numpy()).all()
        # Each event's value is rounded to 1e-9 before the exact sum (abtest.exact): at most half a unit each.
        tracks = expected["tracks"].to_numpy()
        assert (np.abs(frame[S.TIME] - expected["time"]) <= ROUNDING * tracks + 1e-12).all()
        assert (np.abs(frame[S.LATENCY] - expected["latency_ms"]) <= 1000 * ROUNDING + 1e-12).all()


def test_session_ids_and_last_messages_give_the_same_sessions(synthetic_log: Path, synthetic_log_course: Path) -> None:
    by_id = sessions(synthetic_log, Strategy.SESSION_ID)
    by_last = sessions(synthetic_log_course, Strategy.LAST_LIST)

    assert len(by_id) == len(by_last) > 1000
    pd.testing.assert_frame_equal(by_id, by_last)
