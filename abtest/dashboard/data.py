"""The dashboard's one data layer: what each page shows, as plain JSON-ready dicts.

Every figure comes from the same library calls that `abtest report` makes (`Experiment.analyze`
for the metrics table, `session_timeseries` for sessions over time), so a page shows the numbers
of `abtest report --format json` for the same filters. The views only render these dicts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy.special import ndtri

from abtest import sequential, stats
from abtest.config import resolve
from abtest.dashboard.increments import KEPT_GROUPS, KEPT_LATENCY, Kept, SessionGroups
from abtest.dashboard.latency import RELATIVE_ERROR, histogram_sql, latency_rows
from abtest.errors import AbtestError
from abtest.experiment import Experiment, arm_data, bin_width, plan, session_timeseries, time_bin_sql
from abtest.log import EventLog, ExperimentInfo
from abtest.metrics import (
    DAY,
    UNTIL,
    AggrCols,
    add_aggregates,
    aggregates_sql,
    parse_aggregates,
    running_users_sql,
    users_sql,
)
from abtest.sessionize import Filters, Query, SessionColumns, Strategy, events_sql, finish_sql, sessions_sql
from contracts.columns import Columns, quote

# Metric name -> family; each family gets its own forest plot, so a latency effect of hundreds
# of percent does not set the scale of listening effects of a few percent.
FAMILIES = {"mean_request_latency": "latency"}
DEFAULT_FAMILY = "listening"
SESSIONS_VIEW = "dashboard_sessions"  # temporary table of the experiment's sessions, one per page


def family(name: str) -> str:
    """The forest-plot family of metric `name` ('listening' or 'latency')."""
    return FAMILIES.get(name, DEFAULT_FAMILY)


TONES = {"improvement": "better", "regression": "worse"}


def tone(verdict: str) -> str:
    """The page's colour of a report row: 'better', 'worse' or 'neutral', from the report's own
    verdict (a significant move in, or against, the metric's direction)."""
    return TONES.get(verdict, "neutral")


def _number(x: Any) -> Any:
    """JSON-safe number: NaN and infinities become None, as in `abtest report --format json`."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _iso(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class ViewOptions:
    """What a page asks for: the arms, the session filters and the statistics options.

    Attributes:
        control: Control treatment index.
        treatments: Treatment indices to compare (empty: every other treatment).
        filters: Session filters, as `abtest report` takes them.
        metrics: Metric names (empty: all five).
        alpha: Significance level (None: the default).
        relative: Relative interval method (None: the default).
        estimand: 'user-mean' or 'ratio-of-sums' (None: the default).
        correction: Multiple-testing correction (None: the default).
    """

    control: int = 0
    treatments: tuple[int, ...] = ()
    filters: Filters = field(default_factory=Filters)
    metrics: tuple[str, ...] = ()
    alpha: float | None = None
    relative: str | None = None
    estimand: str | None = None
    correction: str | None = None

    def experiment(self) -> Experiment:
        """The analysis these options describe (the same object `abtest report` builds)."""
        from abtest.metrics import default_metrics

        metrics = default_metrics(
            self.metrics or None, estimand=self.estimand, alpha=self.alpha, relative=self.relative
        )
        return Experiment(
            metrics, alpha=self.alpha, relative=self.relative, estimand=self.estimand, correction=self.correction
        )


def experiments(log: EventLog) -> list[dict[str, Any]]:
    """Every experiment of the log: declared treatments and recommenders, users per arm, sample-ratio check.

    Users are those with a completed session, counted as `abtest report` counts them; the
    sample-ratio check is the report's chi-square against an equal split of the declared treatments.
    """
    declared = log.declared() or []
    names = list(dict.fromkeys(row[0] for row in declared))
    serving = {row[0] for row in declared if row[3]}
    started: dict[str, Any] = {}
    for row in declared:
        started.setdefault(row[0], row[4])
    for name in log.observed_experiments():
        if name not in names:
            names.append(name)
    out = []
    for name in names:
        item: dict[str, Any] = {
            "name": name,
            "serving": name in serving,
            "started": _iso(started.get(name)),
        }
        try:
            data, _ = arm_data(log, AggrCols(), experiment=name)
        except AbtestError as error:
            info = log.resolve_experiment(name)
            item.update(
                arms=[_arm(i, info.recommenders.get(i), 0) for i in range(info.treatments or 0)],
                users=0,
                srm=None,
                first=None,
                last=None,
                note=str(error),
            )
            out.append(item)
            continue
        users = [data.aggregates[i].count if i in data.aggregates else 0 for i in range(data.treatments)]
        srm = stats.srm(users) if len(users) > 1 else None
        item.update(
            arms=[_arm(i, data.info.recommenders.get(i), n) for i, n in enumerate(users)],
            users=sum(users),
            srm=_srm(srm),
            first=_iso(data.first),
            last=_iso(data.last),
        )
        out.append(item)
    return out


def _arm(index: int, recommender: str | None, users: int) -> dict[str, Any]:
    label = "C" if index == 0 else f"T{index}"
    return {
        "index": index,
        "label": f"{label} ({recommender})" if recommender else label,
        "recommender": recommender,
        "users": users,
    }


def _srm(srm: stats.SrmResult | None) -> dict[str, Any] | None:
    if srm is None:
        return None
    return {
        "p_value": _number(float(srm.p_value)),
        "mismatch": bool(srm.mismatch),
        "alpha": resolve("srm_alpha", None),
        "observed": list(srm.observed),
        "expected": [float(x) for x in srm.expected],
    }


def experiment(log: EventLog, name: str, options: ViewOptions | None = None, kept: SessionGroups | None = None) -> dict[str, Any]:
    """One experiment's page: the report's metrics with directions, forest plots per family, the
    cumulative effect day by day, sessions over time per arm and request latency per recommender.

    The metrics are `Experiment.analyze`'s rows as `Report.to_dicts` gives them (the JSON of
    `abtest report`), each with its direction, family, colour (from the report's verdict) and treatment label added. An
    experiment with one treatment (nothing to compare) still gets its sessions and latency.
    With `kept`, the sessions of a log of segments are grouped from the groups kept there and the
    segments sealed since (`increments`), instead of from every event.
    """
    options = options or ViewOptions()
    analysis = options.experiment()
    info = log.resolve_experiment(name)
    filters = options.filters
    out: dict[str, Any] = {"experiment": name, "log": log.source, "filters": filters.describe(), "note": None}
    read = kept.read(log, info.name, filters.recommenders) if kept is not None else None
    out.update(_sessions_parts(log, name, info, options, analysis, read))
    if read is not None:
        out["latency"] = kept_latency(log, read)
        return out
    # Without a time filter the sessions span the experiment's events, so the bins of their chart
    # are the latency chart's first guess (checked by `latency` against the events' own span).
    unbounded = filters.since is None and filters.until is None and filters.days is None
    out["latency"] = latency(log, info.name, out["sessions"]["bin_seconds"] if unbounded else None)
    return out


def _sessions_parts(
    log: EventLog, name: str, info: ExperimentInfo, options: ViewOptions, analysis: Experiment, read: Kept | None
) -> dict[str, Any]:
    """What the experiment page draws from the experiment's sessions: the report's rows, the
    cumulative effect and the sessions over time (raises AbtestError when there is nothing to show)."""
    filters = options.filters
    out: dict[str, Any] = {"note": None}
    if read is not None:
        strategy, quality, sessions = Strategy.SESSION_ID, SessionGroups.quality(read), finish_sql(KEPT_GROUPS, filters)
    else:
        strategy, quality = plan(log, info.name)
        sessions = sessions_sql(info.name, strategy, filters, errors=Columns.ERROR in log.columns)
    # The sessions are grouped once per page, into a temporary table (a read-only connection may
    # create one: it lives in the connection's memory, not in the log); the report and every
    # chart read them from there.
    # Every chart aggregates the table or sorts what it reads, so its rows need no order: letting
    # DuckDB's threads insert them as they come saves a fifth of the grouping.
    log.con.execute("SET preserve_insertion_order = false")
    log.con.execute(f"CREATE OR REPLACE TEMP TABLE {SESSIONS_VIEW} AS {sessions.sql}", sessions.params)
    try:
        daily = DailyUsers(log, filters.day_zero)
        try:
            report = analysis.analyze(
                log,
                experiment=name,
                control=options.control,
                treatments=options.treatments or None,
                filters=filters,
                grouped=(Query(f"SELECT * FROM {SESSIONS_VIEW}", []), strategy, quality),
                aggregated=daily,
            )
        except AbtestError as error:
            report = None
            out["note"] = str(error)
        if report is None:
            arms = log.con.execute(f"SELECT count(DISTINCT {SessionColumns.ARM}) FROM {SESSIONS_VIEW}").fetchone()
            if not arms or arms[0] != 1:  # no sessions, or arms to compare that the options got wrong
                raise AbtestError(out["note"])
            out.update(_arms_without_report(log, info.recommenders))
            out["metrics"], out["forest"], out["cumulative"] = [], [], []
        else:
            out.update(_report_part(report, analysis))
            out["cumulative"] = boundaries(cumulative(analysis, report, daily), report.alpha)
        out["sessions"] = _sessions_part(log, out["arms"])
    finally:
        log.con.execute(f"DROP TABLE IF EXISTS {SESSIONS_VIEW}")
    return out


def _report_part(report: Any, analysis: Experiment) -> dict[str, Any]:
    rows = []
    for row in report.to_dicts():
        row = {k: _number(v) for k, v in row.items()}
        row.update(
            treatment_label=report.arm_label(row["treatment"]),
            direction="higher" if row["higher_is_better"] else "lower",
            family=family(row["metric"]),
            tone=tone(row["verdict"]),
        )
        rows.append(row)
    families: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        families.setdefault(row["family"], []).append(row)
    arms = [
        {"index": a, "label": report.arm_label(a), "recommender": report.recommenders.get(a), "users": n}
        for a, n in sorted(report.users.items())
    ]
    return {
        "experiment": report.experiment,
        "control": report.control,
        "treatments": list(report.treatments),
        "arms": arms,
        "alpha": report.alpha,
        "srm": _srm(report.srm),
        "warnings": list(report.warnings),
        "header": report.header(),
        "metrics": rows,
        "forest": [{"family": f, "rows": r} for f, r in families.items()],
    }


def _arms_without_report(log: EventLog, recommenders: dict[int, str]) -> dict[str, Any]:
    users = dict(
        log.con.execute(f"SELECT {SessionColumns.ARM}, count(DISTINCT {quote(SessionColumns.USER)}) FROM {SESSIONS_VIEW} GROUP BY 1").fetchall()
    )
    arms = [_arm(int(a), recommenders.get(int(a)), int(n)) for a, n in sorted(users.items())]
    return {"control": 0, "treatments": [], "arms": arms, "srm": None, "warnings": [], "header": [], "alpha": None}


def day_of(ts: dt.datetime, day_zero: dt.date) -> int:
    """The simulated day of `ts`, counted as the service counts: day d starts at midnight of day_zero + d."""
    return (ts.date() - day_zero).days


class DailyUsers:
    """The per-arm aggregates of the users of the experiment's sessions up to the end of each day,
    from one query (`running_users_sql`: every day in one pass, each user's row holding until
    their next day with sessions) over the page's sessions table.

    Called with the report's columns (it is `arm_data`'s `aggregated`), it runs that query and
    returns the last day's aggregates, the report's own (`add_aggregates` of each user's last
    row, to the last digit those of one query over all the users): the users are grouped once
    for the report and its day-by-day effect. `rows` and `cols` keep what the query gave, `first`
    and `last` the first and last day with sessions.
    """

    def __init__(self, log: EventLog, day_zero: dt.date | None) -> None:
        self.log, self.day_zero = log, day_zero
        self.cols = AggrCols()
        self.rows: list[tuple[Any, ...]] = []  # (day, until, *aggregates_sql row), as aggregates_sql gives them by (DAY, UNTIL)
        self.first = self.last = 0

    def __call__(self, cols: AggrCols) -> list[tuple[Any, ...]]:
        """Run the day-by-day query for `cols`; return the last day's `aggregates_sql` rows (none without sessions)."""
        s = SessionColumns
        bounds = self.log.con.execute(f"SELECT min({s.START}), max({s.START}) FROM {SESSIONS_VIEW}").fetchone()
        self.cols, self.rows = cols, []
        if bounds is None or bounds[0] is None:
            return []
        day_zero = self.day_zero or bounds[0].date()
        self.first, self.last = day_of(bounds[0], day_zero), day_of(bounds[1], day_zero)
        day = f"{s.START}::DATE - DATE '{day_zero:%Y-%m-%d}'"  # day_of in SQL
        table = Query(f"SELECT * FROM {SESSIONS_VIEW}", [])
        if self.first == self.last:  # one day: its users are those of all the sessions, without the running sums' window
            query = aggregates_sql(users_sql(table), cols)
            self.rows = [(self.first, None, *row) for row in self.log.con.execute(query.sql, query.params).fetchall()]
        else:
            query = aggregates_sql(running_users_sql(table, day), cols, by=(DAY, UNTIL))
            self.rows = self.log.con.execute(query.sql, query.params).fetchall()
        return self.until(self.last)

    def until(self, day: int) -> list[tuple[Any, ...]]:
        """`aggregates_sql`'s rows (one per arm) of the users of the sessions up to the end of `day`,
        each with the values of their last day with sessions."""
        return add_aggregates([row[2:] for row in self.rows if row[0] <= day and (row[1] is None or day < row[1])])


def cumulative(analysis: Experiment, report: Any, daily: DailyUsers) -> list[dict[str, Any]]:
    """Every metric's effect on the sessions started up to the end of each day, with its interval.

    The aggregates are `daily`'s (the report's columns, summed for each day), analysed by the same
    metric objects; the last day's point is the report's.
    """
    if not daily.rows:
        return []
    points = []
    for day_index in range(daily.first, daily.last + 1):
        aggregates = parse_aggregates(daily.until(day_index), daily.cols)
        for treatment in report.treatments:
            enough = all(aggregates.get(a) is not None and aggregates[a].count > 1 for a in (report.control, treatment))
            for name, metric in analysis.metrics.items():
                point: dict[str, Any] = {"day": day_index, "metric": name, "treatment": treatment}
                if enough:
                    r = metric.analyze_aggregates(aggregates, report.control, treatment)
                    point.update(
                        effect=_number(100 * r.effect),
                        lower=_number(100 * r.lower),
                        upper=_number(100 * r.upper),
                        significant=bool(r.significant),
                        control_mean=_number(r.control_mean),
                        treatment_mean=_number(r.treatment_mean),
                        control_users=r.control_users,
                        treatment_users=r.treatment_users,
                    )
                else:
                    point.update(effect=None, lower=None, upper=None, significant=False, control_mean=None, treatment_mean=None,
                                 control_users=None, treatment_users=None)
                points.append(point)
    return points


def boundaries(points: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """The cumulative effect's `points` with the boundaries drawn beside the fixed-horizon interval.

    Today one: the always-valid band (`always_lower`, `always_upper`, in %) of the asymptotic
    confidence sequence in `abtest.sequential`: the probability that it ever excludes the true
    effect, at any of the days looked at, is at most `alpha`, so a day on which it excludes zero
    is a valid reason to stop. This is the one place where further boundaries (group-sequential
    alpha spending) join the chart.
    """
    return confidence_sequence_band(points, alpha)


def confidence_sequence_band(points: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """Add to each point the band of `sequential.confidence_sequence` around its effect, in %.

    The standard error is read off the fixed-horizon interval (its width over 2 z), as `abtest
    validate` does, so a Fieller interval's asymmetry is averaged out; n is the users of both arms
    at that day, and the sequence is tuned (`n_opt`) to be tightest at the last day's users.
    """
    z = float(ndtri(1 - alpha / 2))
    series: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for point in points:
        point.update(always_lower=None, always_upper=None)
        series.setdefault((point["metric"], point["treatment"]), []).append(point)
    for looks in series.values():
        drawn = [p for p in looks if p["effect"] is not None and p["lower"] is not None and p["upper"] is not None]
        if not drawn:
            continue
        n = [p["control_users"] + p["treatment_users"] for p in drawn]
        effect = [p["effect"] for p in drawn]
        se = [(p["upper"] - p["lower"]) / (2 * z) for p in drawn]
        lower, upper = sequential.confidence_sequence(effect, se, n, max(n), alpha)
        for point, lo, hi in zip(drawn, lower, upper, strict=True):
            point.update(always_lower=_number(float(lo)), always_upper=_number(float(hi)))
    return points


def _sessions_part(log: EventLog, arms: Sequence[dict[str, Any]]) -> dict[str, Any]:
    s = SessionColumns
    bounds = log.con.execute(f"SELECT min({s.START}), max({s.START}) FROM {SESSIONS_VIEW}").fetchone()
    if bounds is None or bounds[0] is None:
        return {"bin_seconds": None, "rows": []}
    frame = session_timeseries(log, Query(f"SELECT * FROM {SESSIONS_VIEW}", []), bounds[0], bounds[1])
    labels = {arm["index"]: arm["label"] for arm in arms}
    columns = ("arm", "bin", "sessions", "mean_time_per_session", "mean_tracks_per_session")
    rows = [
        {
            "arm": int(arm),
            "label": labels.get(int(arm), f"T{int(arm)}"),
            "bin": start.isoformat(),
            "sessions": int(sessions),
            "mean_time_per_session": _number(float(time)),
            "mean_tracks_per_session": _number(float(tracks)),
        }
        for arm, start, sessions, time, tracks in zip(*(frame[column].tolist() for column in columns), strict=True)
    ]
    return {"bin_seconds": frame.attrs["bin_seconds"], "rows": rows}


def latency(log: EventLog, name: str, guess: int | None = None) -> dict[str, Any]:
    """Request latency per recommender and time bin of the experiment's events: requests, p50 and p99 in ms.

    The bins are those of the events' span (`bin_width`). The events are grouped in the bins of
    `guess` (a width in seconds); the first and last bin found bound the span to within a bin on
    either side, which most often settles the width. The events' span is read (a query of its
    own) only when it does not, or without a guess, and the events are grouped again only when
    the width is not the guess.
    """
    ev = events_sql(name)
    width: int | None = None
    rows: list[tuple[Any, ...]] = []
    if guess is not None:
        rows = _latency_rows(log, ev, guess)
        if rows:
            # The first event lies in the first bin found and the last in the last one.
            step = dt.timedelta(seconds=guess)
            first, last = min(row[1] for row in rows), max(row[1] for row in rows)
            shortest, longest = bin_width(first + step, last), bin_width(first, last + step)
            width = shortest if shortest == longest else None
    if width is None:
        ts = quote(Columns.TS)
        bounds = log.con.execute(f"SELECT min({ts}), max({ts}) FROM ({ev.sql})", ev.params).fetchone()
        if bounds is None or bounds[0] is None:
            return _latency_part(None, [])
        width = bin_width(bounds[0], bounds[1])
    if width != guess or not rows:
        rows = _latency_rows(log, ev, width)
    return _latency_part(width, rows)


def kept_latency(log: EventLog, read: Kept) -> dict[str, Any]:
    """`latency`'s chart from the latency histograms kept of the log's segments (registered as
    `KEPT_LATENCY`, in the bins of the events' span), the counts of each bin and bucket added up."""
    if read.width is None:
        return _latency_part(None, [])
    sql = f"SELECT recommender, bin, bucket, sum(requests)::BIGINT FROM {KEPT_LATENCY} GROUP BY ALL"
    return _latency_part(read.width, latency_rows(log.con.execute(sql).fetchall()))


def _latency_part(width: int | None, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The latency chart's dict: every p50 and p99 is within `RELATIVE_ERROR` of the exact quantile (`latency.py`)."""
    return {
        "bin_seconds": width,
        "relative_error": RELATIVE_ERROR,
        "rows": [
            {"recommender": r, "bin": b.isoformat(), "requests": int(n), "p50_ms": _ms(q[0]), "p99_ms": _ms(q[1]),
             "relative_error": RELATIVE_ERROR}  # in each row too, so that the CSV download says so
            for r, b, n, q in rows
        ],
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else _number(seconds * 1000)


def _latency_rows(log: EventLog, ev: Query, width: int) -> list[tuple[Any, ...]]:
    """(recommender, bin, requests, [p50, p99] of the latency in seconds) per recommender and
    `width`-second bin of the events `ev`, ordered by both, from their latency histograms."""
    query = histogram_sql(ev, time_bin_sql(quote(Columns.TS), width))
    return latency_rows(log.con.execute(query.sql, query.params).fetchall())
