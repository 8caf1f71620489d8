"""Events to sessions, as DuckDB SQL: pure functions that build queries, so the log never leaves DuckDB.

A session is the run of one user's events between two `'last'` messages. When the client sends
a session id (`session` column) the events are grouped by (user, session), which stays correct
when a user's sessions overlap in simulated time. Events without a session id are closed by
`'last'` as in the course's sessionizer: an event belongs to the session ended by the user's
first `'last'` at or after its `ts` (an event at the same `ts` as a `'last'` belongs to the
session that `'last'` closes).

Two equivalent SQL plans exist for events without session ids (`plan_sql` measures which is
cheap): a join of each event to its user's list of `'last'` timestamps (no sort of the log;
fast while users have few sessions), and a running count of `'last'` messages over a window
ordered by `ts` (a full sort; the fallback for users with very many sessions).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from abtest.errors import AbtestError
from contracts.columns import EVENTS_TABLE, MESSAGE_LAST, Columns, quote
from contracts.eventlog.groups import (  # a session's sums and the checks of a row, defined once for the log's writer and abtest
    MAX_LATENCY_S,
    SLOW_ERROR,
    GroupColumns,
    Problem,
    Query,
    events_sql,
    merged_sums_sql,
    quality_sql,
    sums_sql,
)

__all__ = [
    "DAY_ZERO", "MAX_LATENCY_S", "SLOW_ERROR", "Filters", "GroupColumns", "Problem", "Quality", "Query", "SessionColumns",
    "Strategy", "choose_strategy", "events_sql", "finish_sql", "merge_groups_sql", "parse_quality", "plan_sql", "quality_sql",
    "session_groups_sql", "sessions_sql",
]

# The service's default `day_zero` (config/botify.yml): the date of simulated day 0. `sim.run`
# starts day 1 on 2026-01-01, so `--days 1:8` is the simulator's first week, as the service counts.
DAY_ZERO = dt.date(2025, 12, 31)

# The list plan compares each event with every 'last' of its user; above this many comparisons
# per event on average the sorted window plan is used instead.
LIST_PLAN_MAX_COST = 64

@dataclass(frozen=True)
class Quality:
    """Rows of one experiment left out of its analysis, by `Problem`.

    Attributes:
        dropped: Problem -> rows of the experiment (or without an `experiments` map, which cannot
            be told apart from the experiment's) left out for it; problems with no row are absent.
    """

    dropped: dict[str, int]

    @property
    def total_dropped(self) -> int:
        """Rows left out, whatever the problem."""
        return sum(self.dropped.values())

    def describe(self) -> str:
        """One line: how many rows were dropped and why."""
        if not self.dropped:
            return "data quality: no rows dropped"
        reasons = "; ".join(f"{n:,} {problem}" for problem, n in self.dropped.items())
        return f"data quality: {self.total_dropped:,} rows dropped ({reasons})"


def parse_quality(row: tuple[Any, ...]) -> Quality:
    """`quality_sql`'s row as a `Quality`."""
    return Quality(dropped={problem: int(n) for problem, n in zip(Problem.ALL, row, strict=True) if n})


class SessionColumns:
    """Columns of the sessions relation (one row per session)."""

    USER = Columns.USER
    ARM = "arm"  # treatment index of the session's events (the smallest, if they disagree)
    START = "start"  # TIMESTAMP of the session's first event
    TRACKS = "tracks"  # number of events (tracks played, the first included: contracts.sessions) in the session
    TIME = Columns.TIME  # sum of the fractions listened, in tracks (the first track's 1.0 included)
    LATENCY = "latency_ms"  # mean serving latency over the session's requests, milliseconds
    LATENCY_TOTAL = "latency_total_ms"  # summed serving latency of the session, milliseconds
    REQUESTS = "requests"  # 'next' events: the requests the recommender was asked
    ERRORS = "errors"  # requests on which the recommender broke a rule other than the latency budget
    SLOW = "slow"  # requests answered over the recommender's latency budget


class Strategy:
    """How events are grouped into sessions."""

    SESSION_ID = "session-id"  # every event carries a session id
    LAST_LIST = "last-list"  # some events lack one: join to the user's list of 'last' timestamps
    LAST_WINDOW = "last-window"  # same result, by a running count over a sorted window

    ALL = (SESSION_ID, LAST_LIST, LAST_WINDOW)


@dataclass(frozen=True)
class Filters:
    """Which sessions enter the analysis.

    Attributes:
        since: Keep sessions that start at or after this time (None: no bound).
        until: Keep sessions that start before this time (None: no bound).
        days: Keep sessions that start in simulated days [first, last): day d runs from midnight
            of `day_zero` + d days, as the service numbers `Request.day`.
        day_zero: The date of day 0 (the service's `day_zero`); None counts from midnight of the
            experiment's first event's day instead (day 0 = that day, for logs in wall-clock time).
        recommenders: Keep sessions in which at least one event was served by one of these.
        include_open: Also count sessions that have no `'last'` yet (the course drops them).
    """

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    days: tuple[float, float] | None = None
    day_zero: dt.date | None = DAY_ZERO
    recommenders: tuple[str, ...] = ()
    include_open: bool = False

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise AbtestError(f"since == {self.since}, must be before until == {self.until}")
        if self.days is not None and not self.days[0] < self.days[1]:
            raise AbtestError(f"days == {self.days[0]:g}:{self.days[1]:g}, the first day must be before the last")

    def describe(self) -> str:
        """The filters in one line, for report headers ('' when nothing is filtered)."""
        parts = []
        if self.since is not None:
            parts.append(f"since {self.since:%Y-%m-%d %H:%M:%S}")
        if self.until is not None:
            parts.append(f"until {self.until:%Y-%m-%d %H:%M:%S}")
        if self.days is not None:
            zero = "the first event's day" if self.day_zero is None else f"{self.day_zero:%Y-%m-%d}"
            parts.append(f"days {self.days[0]:g}:{self.days[1]:g} (day 0 = {zero})")
        if self.recommenders:
            parts.append(f"recommender {', '.join(self.recommenders)}")
        if self.include_open:
            parts.append("open sessions included")
        return "; ".join(parts)


_C = Columns
_U, _SES, _MSG, _TS = quote(_C.USER), quote(_C.SESSION), quote(_C.MESSAGE), quote(_C.TS)


def plan_sql(experiment: str) -> Query:
    """One row: (events without a session id, mean comparisons per such event under the list plan)."""
    ev = events_sql(experiment)
    sql = f"""
        WITH ev AS ({ev.sql} AND {_SES} IS NULL),
        per_user AS (
            SELECT count(*) AS n, count(*) FILTER (WHERE {_MSG} = '{MESSAGE_LAST}') AS lasts
            FROM ev GROUP BY {_U}
        )
        SELECT coalesce(sum(n), 0)::BIGINT, coalesce(sum(n * lasts) / nullif(sum(n), 0), 0)::DOUBLE FROM per_user"""
    return Query(sql, ev.params)


def choose_strategy(events_without_session: int, cost_per_event: float) -> str:
    """The cheapest exact plan given `plan_sql`'s answer."""
    if events_without_session == 0:
        return Strategy.SESSION_ID
    return Strategy.LAST_LIST if cost_per_event <= LIST_PLAN_MAX_COST else Strategy.LAST_WINDOW


def _group_aggregates(recommenders: tuple[str, ...], errors: bool) -> tuple[str, list[Any]]:
    """The select list of `GroupColumns` (but the keys) over events, and its `?` parameters: the
    shared sums (`contracts.eventlog.groups.sums_sql`) and whether the recommenders filter served."""
    served = f"bool_or({quote(_C.RECOMMENDER)} IN ({', '.join('?' for _ in recommenders)}))" if recommenders else "true"
    return f"{sums_sql(errors)}, {served} AS {GroupColumns.SERVED}", list(recommenders)


def session_groups_sql(experiment: str, *, errors: bool = False, recommenders: tuple[str, ...] = (), source: str = EVENTS_TABLE) -> Query:
    """One row per (user, session id) of the experiment's events in `source`, with `GroupColumns`.

    Only events with a session id are grouped (`Strategy.SESSION_ID`; the caller checks that the
    log has no other). `recommenders` is the filter of `Filters.recommenders` (column `served`).
    """
    ev = events_sql(experiment, errors, source)
    aggregates, params = _group_aggregates(recommenders, errors)
    sql = f"""
        SELECT {_U}, {_SES}, {aggregates}
        FROM ({ev.sql}) WHERE {_SES} IS NOT NULL
        GROUP BY {_U}, {_SES}"""
    return Query(sql, [*params, *ev.params])  # the select list's parameters come first in the text


def merge_groups_sql(relation: str) -> str:
    """SQL: the rows of `relation` (`GroupColumns` of disjoint sets of events) added up per (user, session)."""
    g = GroupColumns
    return f"""
        SELECT {_U}, {_SES}, {merged_sums_sql()}, bool_or({g.SERVED}) AS {g.SERVED}
        FROM {relation}
        GROUP BY {_U}, {_SES}"""


def finish_sql(groups: str, filters: Filters | None = None, day0: str | None = None) -> Query:
    """The sessions (`SessionColumns`) of the relation `groups` (`GroupColumns`) that pass `filters`
    (the recommenders filter was applied when grouping: column `served`).

    `day0`: SQL of the midnight that starts day 0 when `filters.day_zero` is None (default: that of
    the earliest session's start).
    """
    filters = filters or Filters()
    g, s = GroupColumns, SessionColumns
    where = [g.SERVED] if filters.recommenders else []
    params: list[Any] = []
    if not filters.include_open:
        where.append(f"{g.TRACKS} > {g.REQUESTS}")  # every event is a 'next' or a 'last': one of them is a 'last'
    if filters.since is not None:
        where.append(f"{g.START} >= ?")
        params.append(filters.since)
    if filters.until is not None:
        where.append(f"{g.START} < ?")
        params.append(filters.until)
    if filters.days is not None:
        if filters.day_zero is None:
            first = day0 or f"SELECT date_trunc('day', min({g.START})) FROM {groups}"
            origin = f"epoch(({first}))"
        else:
            origin = f"epoch(TIMESTAMP '{filters.day_zero:%Y-%m-%d}')"
        days = f"(epoch({g.START}) - {origin}) / 86400.0"
        where.append(f"{days} >= ? AND {days} < ?")
        params.extend(filters.days)
    sql = f"""
        SELECT {_U} AS {quote(s.USER)}, {g.ARM} AS {s.ARM}, {g.START} AS {s.START}, {g.TRACKS} AS {s.TRACKS},
               {quote(g.TIME)} AS {quote(s.TIME)},
               ({g.LATENCY_SUM} / {g.LATENCY_N}) * 1000 AS {s.LATENCY},
               {g.LATENCY_SUM} * 1000 AS {s.LATENCY_TOTAL},
               {g.REQUESTS} AS {s.REQUESTS}, {g.ERRORS} AS {s.ERRORS}, {quote(g.SLOW)} AS {quote(s.SLOW)}
        FROM {groups}
        {"WHERE " + " AND ".join(where) if where else ""}"""
    return Query(sql, params)


def sessions_sql(experiment: str, strategy: str, filters: Filters | None = None, *, errors: bool = False) -> Query:
    """One row per session of `experiment`, with the columns of `SessionColumns`.

    The events are grouped (`GroupColumns`), then the groups finished and filtered (`finish_sql`),
    the same SQL that finishes the dashboard's groups kept per segment.

    Args:
        experiment: Experiment name; its treatment index becomes the session's arm.
        strategy: One of `Strategy.ALL` (use `choose_strategy`; all give the same sessions).
        filters: Session filters; None keeps every completed session.
        errors: Whether the log has the `error` column (logs before format 3 do not: no errors).
    """
    if strategy not in Strategy.ALL:
        raise AbtestError(f"strategy == {strategy!r}, must be one of {', '.join(Strategy.ALL)}")
    filters = filters or Filters()
    ev = events_sql(experiment, errors)
    cols = f"{_U}, {_SES}, {_MSG}, {_TS}, {quote(_C.TIME)}, {quote(_C.LATENCY)}, {quote(_C.RECOMMENDER)}, {quote(_C.ERROR)}, arm"
    is_last = f"{_MSG} = '{MESSAGE_LAST}'"
    keyed = f"SELECT {cols}, NULL::BIGINT AS seq FROM ev WHERE {_SES} IS NOT NULL"
    if strategy == Strategy.LAST_LIST:
        keyed += f"""
            UNION ALL
            SELECT {", ".join(f"ev.{c.strip()}" for c in cols.split(","))},
                   len(list_filter(lasts.ts_list, lambda x: x < ev.{_TS})) AS seq
            FROM ev LEFT JOIN (
                SELECT {_U}, list({_TS}) AS ts_list FROM ev WHERE {_SES} IS NULL AND {is_last} GROUP BY {_U}
            ) AS lasts ON ev.{_U} = lasts.{_U}
            WHERE ev.{_SES} IS NULL"""
    elif strategy == Strategy.LAST_WINDOW:
        keyed += f"""
            UNION ALL
            SELECT {cols}, coalesce(sum(({is_last})::INTEGER) OVER (
                       PARTITION BY {_U} ORDER BY {_TS}, {_MSG} DESC
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS seq
            FROM ev WHERE {_SES} IS NULL"""
    aggregates, params = _group_aggregates(filters.recommenders, errors)
    day0 = f"SELECT date_trunc('day', min({_TS})) FROM ev"
    finish = finish_sql("groups", filters, day0)
    sql = f"""
        WITH ev AS ({ev.sql}),
        keyed AS ({keyed}),
        groups AS (
            SELECT {_U}, {_SES}, {aggregates}
            FROM keyed
            GROUP BY {_U}, {_SES}{"" if strategy == Strategy.SESSION_ID else ", seq"}
        )
        {finish.sql}"""
    return Query(sql, [*ev.params, *params, *finish.params])
