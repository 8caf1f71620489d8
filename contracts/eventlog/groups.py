"""What a reader sums up of a set of events, defined once: the experiment's valid events, their
per-session sums, their data-quality counts and their latency histograms, as DuckDB SQL.

The event-log writer computes these for every sealed segment (`contracts.eventlog.summary`) and
`abtest` computes them from events (`abtest.sessionize`, `abtest.dashboard`): both build their
queries here, so a session's sums read from a segment's summary are, to the last digit, those of
its events. Every sum adds up across disjoint sets of events (minima, counts, exact DECIMAL sums,
histogram counts), which is what lets a reader add the summaries of a log's segments.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from contracts.columns import EVENTS_TABLE, MESSAGE_LAST, MESSAGE_NEXT, Columns, quote

# Every value is rounded to DECIMAL before it is summed, so a sum is an integer sum, exact in any
# order of DuckDB's threads (abtest.exact says why). Nine decimal places: a nanosecond of latency,
# a billionth of a track; values must stay below 10^9 and sums of squares below 10^20.
DECIMAL = "DECIMAL(18, 9)"
LIMIT = "10^9"

SLOW_ERROR = "slow"  # the `error` of an answer over its latency budget (served, so not a failure)

# Serving latencies above this many seconds are taken for a logging fault, not a slow answer.
MAX_LATENCY_S = 60.0

# Latency histograms: a latency x > 0 is counted in bucket ceil(log_g x), g = (1 + a) / (1 - a),
# whose value 2 g^b / (g + 1) is within a relative a of every latency of the bucket (DDSketch's
# buckets; abtest.dashboard.latency reads quantiles off them).
RELATIVE_ERROR = 0.005  # a
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
ZERO_S = 1e-9  # seconds: a latency at or below this counts as 0 (its bucket's value)
ZERO_BUCKET = -(2**31)  # the bucket of latencies at or below ZERO_S; NULL latencies have bucket NULL

# Bin widths tried for the time-series charts, in seconds: the first giving at most MAX_BINS bins
# wins. Bins count from 1970-01-01, and each width up to a day divides every wider one, so
# histograms kept in the bins of a shorter span (a segment's) add up into the bins of a longer one.
BIN_WIDTHS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400)
MAX_BINS = 60
NESTED_BIN_S = 86400  # the widest bin that divides every wider one (7 days does not divide 30)


@dataclass(frozen=True)
class Query:
    """SQL text and its `?` parameters, in order."""

    sql: str
    params: list[Any]


def rounded(expr: str) -> str:
    """SQL: `expr` rounded to `DECIMAL`."""
    return f"({expr})::{DECIMAL}"


def total(expr: str) -> str:
    """SQL: the exact sum of `expr` (NULLs ignored), a DECIMAL."""
    return f"sum({rounded(expr)})"


def bin_width(first: dt.datetime, last: dt.datetime) -> int:
    """The width in seconds of the time-series bins of the span from `first` to `last`: the first
    of `BIN_WIDTHS` that gives at most `MAX_BINS` bins."""
    span = max((last - first).total_seconds(), 1.0)
    return next((w for w in BIN_WIDTHS if span / w <= MAX_BINS), BIN_WIDTHS[-1])


def time_bin_sql(column: str, width: int) -> str:
    """SQL: the start of the `width`-second bin of TIMESTAMP `column`, bins counted from 1970-01-01.

    `time_bucket` keeps the naive timestamp naive: the former `to_timestamp(floor(epoch(ts) / w) * w)`
    went through TIMESTAMPTZ and back per row, most of the time of a chart over 10^7 events.
    """
    return f"time_bucket(INTERVAL {int(width)} SECONDS, {column}, TIMESTAMP '1970-01-01')"


class Problem:
    """Why a row of the log is left out of the analysis: a NULL key or a value outside its domain.

    A row is counted under the first problem it has, in the order of `ALL`, so counts add up.
    A NULL `time` or `latency` is a missing value, not a problem: the metrics leave it out as
    `avg` does. NaN counts as outside the domain.
    """

    USER = "user is NULL"
    TS = "ts is NULL"
    MESSAGE = f"message is NULL or not '{MESSAGE_NEXT}'/'{MESSAGE_LAST}'"
    EXPERIMENTS = "experiments is NULL"
    TREATMENT = "treatment index NULL or negative"
    TIME = "time outside [0, 1]"
    LATENCY = f"latency negative or above {MAX_LATENCY_S:g} s"

    ALL = (USER, TS, MESSAGE, EXPERIMENTS, TREATMENT, TIME, LATENCY)


_C = Columns
_U, _SES, _MSG, _TS = quote(_C.USER), quote(_C.SESSION), quote(_C.MESSAGE), quote(_C.TS)


def arm_sql(param: str = "?") -> str:
    """SQL of an event's treatment index in the experiment named by `param`: the value of
    `experiments[name]`, found by the key's position in the map's keys (less work per row;
    docs/dashboard.md, Speed); NULL where the map lacks the key."""
    e = quote(Columns.EXPERIMENTS)
    return f"map_values({e})[list_position(map_keys({e}), {param})]"


def checks(name: str = "?") -> tuple[tuple[str, str], ...]:
    """(condition, `Problem`) pairs in the order of `Problem.ALL`: each condition is true (never
    NULL) for a row with that problem, and takes the experiment's name as its `?` parameters,
    in order (`check_params`), or reads it from the SQL `name` (a column). Only the treatment's
    check reads the `experiments` map's values, the costly part of a scan, and it looks at them
    whole first (any NULL or negative index), so that the key is looked up only where one is."""
    c = Columns
    e = quote(c.EXPERIMENTS)
    return (
        (f"{quote(c.USER)} IS NULL", Problem.USER),
        (f"{quote(c.TS)} IS NULL", Problem.TS),
        (f"{quote(c.MESSAGE)} IS NULL OR {quote(c.MESSAGE)} NOT IN ('{MESSAGE_NEXT}', '{MESSAGE_LAST}')", Problem.MESSAGE),
        (f"{e} IS NULL", Problem.EXPERIMENTS),
        (
            f"(coalesce(list_min(map_values({e})) < 0, false) OR list_count(map_values({e})) < len(map_values({e}))) "
            f"AND map_contains({e}, {name}) AND NOT coalesce({arm_sql(name)} >= 0, false)",
            Problem.TREATMENT,
        ),
        # coalesce(..., true) lets NULL pass; NaN fails (DuckDB orders it above every number).
        (f"NOT coalesce({quote(c.TIME)} >= 0 AND {quote(c.TIME)} <= 1, true)", Problem.TIME),
        (f"NOT coalesce({quote(c.LATENCY)} >= 0 AND {quote(c.LATENCY)} <= {MAX_LATENCY_S}, true)", Problem.LATENCY),
    )


def check_params(conditions: list[str], experiment: str) -> list[str]:
    """The `?` parameters of `conditions` (from `checks`), in order: the experiment's name each time."""
    return [experiment] * sum(condition.count("?") for condition in conditions)


def quality_sql(experiment: str, source: str = EVENTS_TABLE, *, name: str | None = None) -> Query:
    """One row: the rows of `experiment` (or without an `experiments` map) dropped per `Problem.ALL`.

    The cheap checks run first, so the map is looked up only for rows that have a problem: the
    scan costs a fraction of the analysis. `source` is the relation of events to read (the log's
    `events`, or some of its segments: the counts of disjoint sets of events add up). With `name`,
    SQL of a column of `source` that holds an experiment's name (`experiment` is then unused), one
    row per name: that name, then the counts of its rows (rows without a map have no name here).
    """
    conditions = [condition for condition, _ in checks(name or "?")]
    problem = "CASE " + " ".join(f"WHEN {condition} THEN {i}" for i, condition in enumerate(conditions)) + " END"
    counts = ", ".join(f"count(*) FILTER (WHERE problem = {i})" for i in range(len(conditions)))
    any_problem = " OR ".join(f"({condition})" for condition in conditions)
    if name is not None:
        sql = f"""
            SELECT name, {counts}
            FROM (SELECT {name} AS name, {problem} AS problem FROM {source} WHERE {any_problem})
            GROUP BY name"""
        return Query(sql, [])
    sql = f"""
        SELECT {counts}
        FROM (
            SELECT {problem} AS problem FROM {source}
            WHERE ({any_problem}) AND ({quote(_C.EXPERIMENTS)} IS NULL OR map_contains({quote(_C.EXPERIMENTS)}, ?))
        )"""
    params = check_params(conditions, experiment)
    return Query(sql, [*params, *params, experiment])


def events_sql(experiment: str, errors: bool = False, source: str = EVENTS_TABLE, *, name: str | None = None) -> Query:
    """The experiment's events with their treatment index as column `arm`; events without the
    key, and events with a `Problem` (counted by `quality_sql`), are dropped.

    `errors`: whether the log has the `error` column (format 3); older logs read it as NULL.
    `source`: the relation of events to read (the log's `events` unless told).
    `name`: SQL of a column of `source` that holds an experiment's name, kept as column `name`
    (`experiment` is then unused): each row is an event of the experiment it names.
    The treatment is looked up by the key's position in the map's keys: the value of
    `experiments[name]`, found with less work per row (docs/dashboard.md, Speed).
    """
    # The treatment's check is the arm itself here: cheaper than `checks`' form, which a scan
    # of every row (`quality_sql`) needs.
    key = name or "?"
    conditions = [condition for condition, problem in checks(key) if problem != Problem.TREATMENT]
    valid = " AND ".join(f"NOT ({condition})" for condition in conditions)
    error = quote(_C.ERROR) if errors else f"NULL::VARCHAR AS {quote(_C.ERROR)}"
    named = f", {name} AS name" if name is not None else ""
    sql = f"""
        SELECT * FROM (
            SELECT {_U}, {_SES}, {_MSG}, {_TS}, {quote(_C.TIME)}, {quote(_C.LATENCY)}, {quote(_C.RECOMMENDER)}, {error}, {arm_sql(key)} AS arm{named}
            FROM {source}
            WHERE map_contains({quote(_C.EXPERIMENTS)}, {key}) AND {valid}
        ) WHERE arm >= 0"""
    if name is not None:
        return Query(sql, [])
    return Query(sql, [experiment, experiment, *check_params(conditions, experiment)])


class GroupColumns:
    """Columns of a session's group: its sums and extremes over some of its events, before any session filter.

    They add up over disjoint sets of a session's events (`merge_groups_sql`: minima, counts, exact
    DECIMAL sums and an OR), so the groups of the log's sealed segments, kept or read from their
    summaries, and those of the segments sealed since give the sessions of the whole log to the last digit.
    """

    USER = Columns.USER
    SESSION = Columns.SESSION
    ARM = "arm"  # the smallest treatment index of the events
    START = "start"  # the first event's `ts`
    LAST = "last_ts"  # the last event's `ts` (unused by the sessions: a query that does not read it does not compute it)
    TRACKS = "tracks"  # events
    TIME = Columns.TIME  # exact sum of `time`, DECIMAL
    LATENCY_SUM = "latency_sum"  # exact sum of `latency` in seconds, DECIMAL
    LATENCY_N = "latency_n"  # events with a latency
    REQUESTS = "requests"  # 'next' events
    ERRORS = "errors"  # requests on which the recommender broke a rule other than the latency budget
    SLOW = "slow"  # requests answered over the recommender's latency budget
    SERVED = "served"  # some event was served by one of the recommenders filtered on (TRUE without that filter)

    ALL = (USER, SESSION, ARM, START, LAST, TRACKS, TIME, LATENCY_SUM, LATENCY_N, REQUESTS, ERRORS, SLOW, SERVED)
    SUMS = (ARM, START, LAST, TRACKS, TIME, LATENCY_SUM, LATENCY_N, REQUESTS, ERRORS, SLOW)  # all but the keys and SERVED


def sums_sql(errors: bool) -> str:
    """The select list of `GroupColumns.SUMS` over events (`events_sql`'s columns): the one
    definition of a session's sums. `errors`: whether the events have the `error` column."""
    g = GroupColumns
    error = quote(_C.ERROR)
    if errors:
        errors_sql = f"count(*) FILTER (WHERE {error} IS NOT NULL AND {error} <> '{SLOW_ERROR}')"
        slow_sql = f"count(*) FILTER (WHERE {error} = '{SLOW_ERROR}')"
    else:  # a log without the column has no errors: two aggregates fewer per session
        errors_sql = slow_sql = "0::BIGINT"
    return f"""min(arm) AS {g.ARM}, min({_TS}) AS {g.START}, max({_TS}) AS {g.LAST}, count(*) AS {g.TRACKS},
               {total(quote(_C.TIME))} AS {quote(g.TIME)},
               {total(quote(_C.LATENCY))} AS {g.LATENCY_SUM}, count({quote(_C.LATENCY)}) AS {g.LATENCY_N},
               count(*) FILTER (WHERE {_MSG} <> '{MESSAGE_LAST}') AS {g.REQUESTS},
               {errors_sql} AS {g.ERRORS}, {slow_sql} AS {quote(g.SLOW)}"""


def merged_sums_sql() -> str:
    """The select list of `GroupColumns.SUMS` over groups of disjoint sets of a session's events: their sums added up."""
    g = GroupColumns
    return f"""min({g.ARM}) AS {g.ARM}, min({g.START}) AS {g.START}, max({g.LAST}) AS {g.LAST},
               sum({g.TRACKS})::BIGINT AS {g.TRACKS}, sum({quote(g.TIME)}) AS {quote(g.TIME)},
               sum({g.LATENCY_SUM}) AS {g.LATENCY_SUM}, sum({g.LATENCY_N})::BIGINT AS {g.LATENCY_N},
               sum({g.REQUESTS})::BIGINT AS {g.REQUESTS}, sum({g.ERRORS})::BIGINT AS {g.ERRORS},
               sum({quote(g.SLOW)})::BIGINT AS {quote(g.SLOW)}"""


def bucket_sql(latency: str) -> str:
    """SQL: the histogram bucket of the latency `latency` in seconds (NULL for a NULL latency)."""
    return (
        f"CASE WHEN {latency} IS NULL THEN NULL WHEN {latency} <= {ZERO_S} THEN {ZERO_BUCKET} "
        f"ELSE ceil(ln({latency}) / {math.log(GAMMA)!r})::INTEGER END"
    )


def histogram_sql(events: Query, key: str, by: str = "") -> Query:
    """(recommender, `key`, bucket, requests) of `events` (a query with the log's columns); `key` is
    SQL over them, such as the start of an event's time bin; `by`, SQL of more columns to group by
    (such as `name` of `events_sql`), leads each row when given."""
    rec, lat = quote(Columns.RECOMMENDER), quote(Columns.LATENCY)
    sql = f"""
        SELECT {by + ", " if by else ""}{rec} AS recommender, {key} AS bin, {bucket_sql(lat)} AS bucket, count(*) AS requests
        FROM ({events.sql})
        GROUP BY ALL"""
    return Query(sql, list(events.params))
