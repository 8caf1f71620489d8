"""User-level metrics and their analysis from per-arm aggregates, in the style of tea-tasting.

The unit of randomisation is the user, so every metric is first reduced to one value (or one
numerator/denominator pair) per user; `users_sql` does that in DuckDB. A metric class names the
per-user columns it needs (`aggr_cols`); `aggregates_sql` reduces them to per-arm sufficient
statistics (counts and exact sums of values, squares and products, see `abtest.exact`) and
`analyze_aggregates` turns two arms' aggregates into a `MetricResult`. Only a few numbers per
arm ever leave DuckDB, so logs larger than memory work.

Two estimands are offered for the per-session metrics:

* `Mean` of per-user values (the course's definition, the default): e.g. each user's mean time
  per session, averaged over users. Every user weighs the same.
* `RatioOfSums`: e.g. total time over total sessions in the arm, so heavy users weigh more. Its
  variance comes from the delta method over users (Deng et al., 2018,
  https://arxiv.org/abs/1803.06336), never from treating sessions as independent.

>>> import numpy as np
>>> from abtest.metrics import Aggregates, Mean
>>> rng = np.random.default_rng(0)
>>> control, treatment = rng.normal(10, 2, 500), rng.normal(11, 2, 500)
>>> data = {0: Aggregates.from_arrays(time=control), 1: Aggregates.from_arrays(time=treatment)}
>>> result = Mean("time").analyze_aggregates(data, control=0, treatment=1)
>>> bool(result.significant), round(result.effect, 1)
(True, 0.1)
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from abtest import exact, stats
from abtest.config import resolve
from abtest.errors import AbtestError
from abtest.sessionize import Query, SessionColumns
from contracts.columns import quote


class UserColumns:
    """Per-user columns computed by `users_sql` (one row per user of the experiment)."""

    USER = SessionColumns.USER
    ARM = "arm"
    MIXED = "mixed"  # True when the user's sessions name more than one treatment
    TIME = "time"  # total time listened (sum over sessions of the fractions listened)
    SESSIONS = "sessions"  # number of sessions
    TRACKS = "tracks"  # total tracks played
    MEAN_TIME_PER_SESSION = "mean_time_per_session"
    MEAN_TRACKS_PER_SESSION = "mean_tracks_per_session"
    MEAN_REQUEST_LATENCY = "mean_request_latency"  # mean over sessions of the session's mean latency, ms
    LATENCY_TOTAL = "latency_total_ms"  # summed latency over all requests, ms
    REQUESTS = "requests"  # requests asked of the recommender ('next' events)
    ERRORS = "errors"  # requests on which the recommender failed or broke a rule (fallback or 500)
    SLOW = "slow"  # requests answered over the recommender's latency budget
    FIRST = "first_start"  # start of the user's first session
    LAST = "last_start"  # start of the user's last session

    VALUES = (
        TIME,
        SESSIONS,
        TRACKS,
        MEAN_TIME_PER_SESSION,
        MEAN_TRACKS_PER_SESSION,
        MEAN_REQUEST_LATENCY,
        LATENCY_TOTAL,
        REQUESTS,
        ERRORS,
        SLOW,
    )


def _partials() -> dict[str, tuple[str, str]]:
    """Per-user partial aggregates of sessions: name -> (SQL aggregate over `SessionColumns`, how the
    partials of consecutive periods combine: 'sum', 'count' (a sum kept BIGINT), 'min' or 'max').

    Every `UserColumns` value is a function of these (`_user_values`), so a user's values over the
    sessions up to any day follow from running combinations of per-day partials (`running_users_sql`)
    with the same types, hence the same numbers, as `users_sql` over those sessions.
    """
    s = SessionColumns
    return {
        "p_arm_min": (f"min({s.ARM})", "min"),
        "p_arm_max": (f"max({s.ARM})", "max"),
        "p_sessions": ("count(*)", "count"),
        "p_time": (f"sum({quote(s.TIME)})", "sum"),
        "p_tracks": (f"sum({s.TRACKS})", "sum"),
        "p_latency": (exact.total(s.LATENCY), "sum"),
        "p_latency_n": (f"count({s.LATENCY})", "count"),
        "p_latency_total": (f"sum({s.LATENCY_TOTAL})", "sum"),
        "p_requests": (f"sum({s.REQUESTS})", "sum"),
        "p_errors": (f"sum({s.ERRORS})", "sum"),
        "p_slow": (f"sum({quote(s.SLOW)})", "sum"),
        "p_first": (f"min({s.START})", "min"),
        "p_last": (f"max({s.START})", "max"),
    }


def _user_values() -> str:
    """SQL select list: the `UserColumns` values (all but the user) from the columns of `_partials`."""
    u = UserColumns
    return f"""p_arm_min AS {u.ARM}, p_arm_max <> p_arm_min AS {u.MIXED},
               p_time::DOUBLE AS {quote(u.TIME)},
               p_sessions::DOUBLE AS {u.SESSIONS},
               p_tracks::DOUBLE AS {u.TRACKS},
               p_time / p_sessions AS {u.MEAN_TIME_PER_SESSION},
               p_tracks / p_sessions AS {u.MEAN_TRACKS_PER_SESSION},
               p_latency / p_latency_n AS {u.MEAN_REQUEST_LATENCY},
               p_latency_total::DOUBLE AS {u.LATENCY_TOTAL},
               p_requests::DOUBLE AS {u.REQUESTS}, p_errors::DOUBLE AS {u.ERRORS},
               p_slow::DOUBLE AS {quote(u.SLOW)},
               p_first AS {u.FIRST}, p_last AS {u.LAST}"""


def users_sql(sessions: Query) -> Query:
    """One row per user of the `sessions` query with the columns of `UserColumns`."""
    s, u = SessionColumns, UserColumns
    partials = ", ".join(f"{aggregate} AS {name}" for name, (aggregate, _) in _partials().items())
    sql = f"""
        SELECT {quote(u.USER)}, {_user_values()}
        FROM (
            SELECT {quote(s.USER)} AS {quote(u.USER)}, {partials}
            FROM ({sessions.sql})
            GROUP BY {quote(s.USER)}
        )"""
    return Query(sql, list(sessions.params))


DAY = "day"  # the day column of `running_users_sql`
UNTIL = "until_day"  # the user's next day with a session (NULL: none), where a row of `running_users_sql` stops holding


def running_users_sql(sessions: Query, day: str) -> Query:
    """The `UserColumns` of each user's sessions up to each day, a row per user and day with sessions.

    `day` is SQL over `SessionColumns` giving a session's day (an integer). A row's `DAY` is a day
    on which the user has sessions and its values are those of the user's sessions of that day and
    before; the row holds for the days from `DAY` to the day before `UNTIL`. So the users of the
    sessions cut at the end of day d are the rows with `DAY` <= d < `UNTIL`, with the values, to the
    last bit, of `users_sql` over those sessions: one pass over the sessions, instead of one grouping
    of all sessions per day.
    """
    s, u = SessionColumns, UserColumns
    parts = _partials()
    per_day = ", ".join(f"{aggregate} AS {name}" for name, (aggregate, _) in parts.items())
    combine = {"sum": "sum({}) OVER w", "count": "(sum({}) OVER w)::BIGINT", "min": "min({}) OVER w", "max": "max({}) OVER w"}
    running = ", ".join(f"{combine[how].format(name)} AS {name}" for name, (_, how) in parts.items())
    user, d, until = quote(u.USER), quote(DAY), quote(UNTIL)
    sql = f"""
        WITH per_day AS (
            SELECT {quote(s.USER)} AS {user}, ({day})::BIGINT AS {d}, {per_day}
            FROM ({sessions.sql})
            GROUP BY ALL
        ),
        running AS (
            SELECT {user}, {d}, lead({d}) OVER (PARTITION BY {user} ORDER BY {d}) AS {until}, {running}
            FROM per_day
            WINDOW w AS (PARTITION BY {user} ORDER BY {d} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        )
        SELECT {d}, {until}, {user}, {_user_values()}
        FROM running"""
    return Query(sql, list(sessions.params))


class AggrCols(NamedTuple):
    """Per-user columns a metric needs aggregated per arm.

    Attributes:
        mean_cols: Columns whose mean and variance are needed.
        cov_cols: Pairs of columns whose covariance is needed.
    """

    mean_cols: tuple[str, ...] = ()
    cov_cols: tuple[tuple[str, str], ...] = ()

    def __or__(self, other: AggrCols) -> AggrCols:  # type: ignore[override]
        """Both sets of columns, without duplicates."""
        means = tuple(dict.fromkeys(self.mean_cols + other.mean_cols))
        covs = tuple(dict.fromkeys(tuple(sorted(pair)) for pair in self.cov_cols + other.cov_cols))
        return AggrCols(means, covs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Aggregates:
    """Sufficient statistics of per-user columns in one arm: count, means, sample variances, covariances."""

    count: int
    means: dict[str, float] = field(default_factory=dict)
    variances: dict[str, float] = field(default_factory=dict)
    covariances: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def from_arrays(cls, **columns: np.ndarray) -> Aggregates:
        """Aggregates of per-user arrays held in memory (tests, small data); all columns have one length."""
        arrays = {name: np.asarray(values, dtype=float) for name, values in columns.items()}
        lengths = {len(values) for values in arrays.values()}
        if len(lengths) != 1:
            raise AbtestError(f"columns have lengths {sorted(lengths)}, must all have the same length")
        n = lengths.pop()
        names = sorted(arrays)
        ddof = 1 if n > 1 else 0
        return cls(
            count=n,
            means={name: float(np.mean(arrays[name])) for name in names},
            variances={name: float(np.var(arrays[name], ddof=ddof)) if n > 1 else math.nan for name in names},
            covariances={
                (a, b): float(np.cov(arrays[a], arrays[b], ddof=ddof)[0, 1]) if n > 1 else math.nan
                for i, a in enumerate(names)
                for b in names[i + 1 :]
            },
        )

    def mean(self, col: str | None) -> float:
        """Mean of `col` (1 for None, the denominator of a plain mean)."""
        return 1.0 if col is None else self.means[col]

    def var(self, col: str | None) -> float:
        """Sample variance of `col` (0 for None)."""
        return 0.0 if col is None else self.variances[col]

    def cov(self, a: str | None, b: str | None) -> float:
        """Sample covariance of `a` and `b` (0 if either is None)."""
        if a is None or b is None:
            return 0.0
        if a == b:
            return self.variances[a]
        return self.covariances[tuple(sorted((a, b)))]  # type: ignore[index]


def aggregates_sql(users: Query, cols: AggrCols, by: tuple[str, ...] = ()) -> Query:
    """Per-arm aggregates of the `users` query: arm, users, mixed users, first and last session start, then
    for each needed column its count and exact sums (`abtest.exact`) of values and squares, and for each
    covariance pair the same over the users having both values. NULLs are left out, as `avg` would.

    `by`: columns of `users` to group by before the arm (such as `DAY` of `running_users_sql`); they
    lead each row, before the arm, and are to be taken off before `parse_aggregates` (or `add_aggregates`).
    """
    u = UserColumns
    unknown = [c for c in _summed(cols) if c not in u.VALUES]
    if unknown:
        raise AbtestError(f"unknown per-user column(s) {', '.join(unknown)}; known: {', '.join(u.VALUES)}")
    exprs = ["count(*) AS n", f"count(*) FILTER (WHERE {u.MIXED}) AS n_mixed", f"min({u.FIRST})", f"max({u.LAST})"]
    for col in _summed(cols):
        c = quote(col)
        exprs += [f"count({c})", exact.total(c), exact.product_total(c, c)]
    for a, b in cols.cov_cols:
        both = f" FILTER (WHERE {quote(a)} IS NOT NULL AND {quote(b)} IS NOT NULL)"
        exprs += [f"count(*){both}", exact.total(quote(a)) + both, exact.total(quote(b)) + both]
        exprs.append(exact.product_total(quote(a), quote(b)))
    keys = ", ".join([*(quote(c) for c in by), u.ARM])
    sql = f"SELECT {keys}, {', '.join(exprs)} FROM ({users.sql}) GROUP BY {keys} ORDER BY {keys}"
    return Query(sql, list(users.params))


def parse_aggregates(rows: list[tuple], cols: AggrCols) -> dict[int, Aggregates]:
    """`aggregates_sql` result rows -> {arm: Aggregates}, means and (co)variances finished from the exact sums."""
    out = {}
    for row in rows:
        arm, n, values = int(row[0]), int(row[1]), list(row[5:])
        means, variances, covariances = {}, {}, {}
        for col in _summed(cols):
            count, total, squares = values[:3]
            del values[:3]
            means[col] = exact.average(count, total)
            variances[col] = exact.covariance(count, total, total, squares)
        for a, b in cols.cov_cols:
            count, total_a, total_b, products = values[:4]
            del values[:4]
            covariances[tuple(sorted((a, b)))] = exact.covariance(count, total_a, total_b, products)
        out[arm] = Aggregates(n, means, variances, covariances)  # type: ignore[arg-type]
    return out


def add_aggregates(rows: list[tuple]) -> list[tuple]:
    """`aggregates_sql` rows of disjoint sets of users -> one row per arm, as one query over all those users gives.

    Counts and exact sums add (`exact.add`, so the sum is the same to the last digit); the first and last
    session start are the earliest and the latest.
    """
    out: dict[int, list] = {}
    for row in rows:
        arm = int(row[0])
        if arm not in out:
            out[arm] = list(row)
            continue
        acc = out[arm]
        acc[1], acc[2] = acc[1] + row[1], acc[2] + row[2]
        acc[3], acc[4] = min(acc[3], row[3]), max(acc[4], row[4])
        acc[5:] = [exact.add(x, y) for x, y in zip(acc[5:], row[5:], strict=True)]
    return [tuple(out[arm]) for arm in sorted(out)]


def _summed(cols: AggrCols) -> tuple[str, ...]:
    """Every column whose sums are needed: the mean columns and both sides of each covariance pair."""
    return tuple(dict.fromkeys(cols.mean_cols + tuple(c for pair in cols.cov_cols for c in pair)))


class MetricResult(NamedTuple):
    """Result of one metric for one treatment against the control.

    Attributes:
        control_mean: Metric value in the control arm.
        treatment_mean: Metric value in the treatment arm.
        effect: Relative effect, treatment / control - 1 (a fraction, not %).
        lower: Lower bound of the relative effect's confidence interval (fraction).
        upper: Upper bound of the relative effect's confidence interval (fraction).
        p_value: Two-sided p-value of "no difference", from the same procedure as the interval.
        significant: p_value < alpha, equivalently: the relative interval excludes 0.
        diff: Absolute difference, treatment - control.
        diff_lower: Lower bound of the Welch interval of the absolute difference.
        diff_upper: Upper bound of the Welch interval of the absolute difference.
        statistic: Test statistic (Welch t for Fieller, delta-method t for delta).
        df: Welch-Satterthwaite degrees of freedom of the statistic.
        control_users: Users in the control arm.
        treatment_users: Users in the treatment arm.
        method: How the relative interval was computed ('fieller' or 'delta').
    """

    control_mean: float
    treatment_mean: float
    effect: float
    lower: float
    upper: float
    p_value: float
    significant: bool
    diff: float
    diff_lower: float
    diff_upper: float
    statistic: float
    df: float
    control_users: int
    treatment_users: int
    method: str


class MetricBaseAggregated(abc.ABC):
    """A metric analysed from per-arm aggregates of per-user columns."""

    #: True when a larger value is better (used by `abtest check` to tell a regression).
    higher_is_better: bool = True

    def __init__(self, *, alpha: float | None = None, relative: str | None = None) -> None:
        """Args: alpha: significance level (default from `abtest.config`); relative: 'fieller' or 'delta'."""
        self.alpha = resolve("alpha", alpha)
        self.relative = resolve("relative", relative)

    @property
    @abc.abstractmethod
    def aggr_cols(self) -> AggrCols:
        """Per-user columns to aggregate for this metric."""

    @abc.abstractmethod
    def estimate(self, data: Aggregates) -> stats.Estimate:
        """The metric's value in one arm, the variance of that value, and its degrees of freedom."""

    def analyze_aggregates(self, data: dict[int, Aggregates], control: int, treatment: int) -> MetricResult:
        """Compare `treatment` with `control` from their aggregates.

        Raises:
            AbtestError: an arm is missing or has fewer than two users.
        """
        for role, arm in (("control", control), ("treatment", treatment)):
            if arm not in data or data[arm].count == 0:
                raise AbtestError(f"{role} arm (treatment {arm}) has no users")
            if data[arm].count < 2:
                raise AbtestError(f"{role} arm (treatment {arm}) has 1 user, needs at least 2 for a variance")
        c, t = self.estimate(data[control]), self.estimate(data[treatment])
        cmp = stats.compare(c, t, alpha=self.alpha, relative=self.relative)
        return MetricResult(
            control_mean=float(c.value),
            treatment_mean=float(t.value),
            effect=float(cmp.effect),
            lower=float(cmp.lower),
            upper=float(cmp.upper),
            p_value=float(cmp.p_value),
            significant=bool(cmp.significant),
            diff=float(cmp.diff),
            diff_lower=float(cmp.diff_lower),
            diff_upper=float(cmp.diff_upper),
            statistic=float(cmp.statistic),
            df=float(cmp.df),
            control_users=data[control].count,
            treatment_users=data[treatment].count,
            method=self.relative,
        )


class RatioOfSums(MetricBaseAggregated):
    """Ratio of two per-user sums over the arm, sum(numer) / sum(denom), with a delta-method variance.

    The variance of the ratio of means of per-user (x, y) pairs is, to first order,
    (var(x)/ȳ² - 2 x̄ cov(x, y)/ȳ³ + x̄² var(y)/ȳ⁴) / n (the delta method; Deng, Knoblich and Lu,
    "Applying the Delta Method in Metric Analytics", KDD 2018, https://arxiv.org/abs/1803.06336).
    With `denom=None` it is the plain mean of `numer` and the variance is var(x)/n.
    """

    def __init__(
        self,
        numer: str,
        denom: str | None = None,
        *,
        higher_is_better: bool = True,
        alpha: float | None = None,
        relative: str | None = None,
    ) -> None:
        """Args: numer/denom: per-user columns (`UserColumns`); higher_is_better: direction of improvement."""
        super().__init__(alpha=alpha, relative=relative)
        self.numer = numer
        self.denom = denom
        self.higher_is_better = higher_is_better

    @property
    def aggr_cols(self) -> AggrCols:
        """Means and variances of numer and denom, and their covariance."""
        if self.denom is None:
            return AggrCols(mean_cols=(self.numer,))
        return AggrCols(mean_cols=(self.numer, self.denom), cov_cols=((self.numer, self.denom),))

    def estimate(self, data: Aggregates) -> stats.Estimate:
        """sum(numer)/sum(denom) in one arm, with its delta-method variance and n - 1 degrees of freedom."""
        n = data.count
        mx, my = data.mean(self.numer), data.mean(self.denom)
        vx, vy, cxy = data.var(self.numer), data.var(self.denom), data.cov(self.numer, self.denom)
        var = stats.ratio_variance(mx, my, vx, vy, cxy) / n
        return stats.Estimate(value=mx / my, variance=var, df=n - 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.numer!r}, {self.denom!r})"


class Mean(RatioOfSums):
    """Mean of a per-user value over the users of an arm (the course's estimand), compared with Welch's t-test."""

    def __init__(
        self,
        value: str,
        *,
        higher_is_better: bool = True,
        alpha: float | None = None,
        relative: str | None = None,
    ) -> None:
        """Args: value: per-user column (`UserColumns`); higher_is_better: direction of improvement."""
        super().__init__(value, None, higher_is_better=higher_is_better, alpha=alpha, relative=relative)
        self.value = value

    def __repr__(self) -> str:
        return f"Mean({self.value!r})"


METRIC_NAMES = (
    "time", "sessions", "mean_time_per_session", "mean_tracks_per_session", "mean_request_latency", "error_rate", "slow_rate",
)
# The rows of a report by default; error_rate and slow_rate join them when the log records any error.
REPORT_METRICS = METRIC_NAMES[:5]
ERROR_METRICS = ("error_rate", "slow_rate")


def default_metrics(
    names: tuple[str, ...] | list[str] | None = None,
    *,
    estimand: str | None = None,
    alpha: float | None = None,
    relative: str | None = None,
) -> dict[str, MetricBaseAggregated]:
    """The report's metrics by name, for the 'user-mean' (default) or 'ratio-of-sums' estimand.

    time and sessions are per-user totals, identical under both estimands; the per-session means
    and the latency differ (ratio-of-sums: total over all sessions or requests of the arm).
    """
    estimand = resolve("estimand", estimand)
    names = tuple(names) if names else REPORT_METRICS
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown:
        raise AbtestError(f"unknown metric(s) {', '.join(unknown)}; known metrics: {', '.join(METRIC_NAMES)}")
    u = UserColumns
    kw: dict[str, Any] = {"alpha": alpha, "relative": relative}
    if estimand == "user-mean":
        build = {
            "time": lambda: Mean(u.TIME, **kw),
            "sessions": lambda: Mean(u.SESSIONS, **kw),
            "mean_time_per_session": lambda: Mean(u.MEAN_TIME_PER_SESSION, **kw),
            "mean_tracks_per_session": lambda: Mean(u.MEAN_TRACKS_PER_SESSION, **kw),
            "mean_request_latency": lambda: Mean(u.MEAN_REQUEST_LATENCY, higher_is_better=False, **kw),
            "error_rate": lambda: RatioOfSums(u.ERRORS, u.REQUESTS, higher_is_better=False, **kw),
            "slow_rate": lambda: RatioOfSums(u.SLOW, u.REQUESTS, higher_is_better=False, **kw),
        }
    else:
        build = {
            "time": lambda: Mean(u.TIME, **kw),
            "sessions": lambda: Mean(u.SESSIONS, **kw),
            "mean_time_per_session": lambda: RatioOfSums(u.TIME, u.SESSIONS, **kw),
            "mean_tracks_per_session": lambda: RatioOfSums(u.TRACKS, u.SESSIONS, **kw),
            "mean_request_latency": lambda: RatioOfSums(u.LATENCY_TOTAL, u.TRACKS, higher_is_better=False, **kw),
            "error_rate": lambda: RatioOfSums(u.ERRORS, u.REQUESTS, higher_is_better=False, **kw),
            "slow_rate": lambda: RatioOfSums(u.SLOW, u.REQUESTS, higher_is_better=False, **kw),
        }
    return {name: build[name]() for name in names}
