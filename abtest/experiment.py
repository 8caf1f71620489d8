"""An experiment analysis: from an open event log to a `Report`, with DuckDB doing the heavy lifting.

>>> from abtest import EventLog, Experiment  # doctest: +SKIP
>>> with EventLog.open("data/events.duckdb") as log:  # doctest: +SKIP
...     report = Experiment().analyze(log, control=0, treatments=[2])
...     print(report.to_string())
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from abtest import cuped, stats
from abtest.config import resolve
from abtest.errors import AbtestError
from abtest.log import EventLog, ExperimentInfo
from abtest.metrics import (
    ERROR_METRICS,
    AggrCols,
    Aggregates,
    MetricBaseAggregated,
    MetricResult,
    UserColumns,
    aggregates_sql,
    default_metrics,
    parse_aggregates,
    users_sql,
)
from abtest.report import AdjustedRow, Report, ReportRow
from abtest.sessionize import (
    Filters,
    Quality,
    Query,
    SessionColumns,
    Strategy,
    choose_strategy,
    parse_quality,
    plan_sql,
    quality_sql,
    sessions_sql,
)
from abtest.truth import potential_outcomes, true_effect, truth_experiments
from contracts.columns import EVENTS_TABLE, Columns, quote
from contracts.eventlog.groups import BIN_WIDTHS as BIN_WIDTHS  # the charts' bins, shared with the log's summaries
from contracts.eventlog.groups import bin_width, time_bin_sql

if TYPE_CHECKING:
    import datetime as dt

    import pandas as pd

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ArmData:
    """What the log holds for one experiment after filters: per-arm aggregates and their context.

    Attributes:
        info: The experiment (name, declared treatments and recommenders).
        treatments: Number of treatments (declared, else the largest observed index + 1).
        aggregates: Treatment index -> aggregates of the requested per-user columns.
        mixed_users: Users whose events name more than one treatment (counted in the smallest).
        first: Start of the first session analysed.
        last: Start of the last session analysed.
        strategy: How events were grouped into sessions (`sessionize.Strategy`).
        quality: Rows read and rows left out for a NULL key or a value outside its domain.
    """

    info: ExperimentInfo
    treatments: int
    aggregates: dict[int, Aggregates]
    mixed_users: int
    first: dt.datetime
    last: dt.datetime
    strategy: str
    quality: Quality | None = None


def plan(log: EventLog, experiment: str) -> tuple[str, Quality]:
    """The sessionizing strategy for this log and its data quality: a cheap null count and the
    count of dropped rows first, the cost estimate only if needed."""
    query = quality_sql(experiment)
    quality = parse_quality(log.con.execute(query.sql, query.params).fetchone())  # type: ignore[arg-type]
    if quality.dropped:
        logger.info("experiment %r: %s", experiment, quality.describe())
    nulls = log.con.execute(f"SELECT count(*) FROM {EVENTS_TABLE} WHERE {quote(Columns.SESSION)} IS NULL").fetchone()
    if nulls is None or nulls[0] == 0:
        return Strategy.SESSION_ID, quality
    query = plan_sql(experiment)
    events, cost = log.con.execute(query.sql, query.params).fetchone()  # type: ignore[misc]
    strategy = choose_strategy(int(events), float(cost))
    logger.info("%d events without a session id, %.1f comparisons each: sessions by %s", events, cost, strategy)
    return strategy, quality


def arm_data(
    log: EventLog,
    cols: AggrCols,
    *,
    experiment: str | None = None,
    filters: Filters | None = None,
    grouped: tuple[Query, str, Quality] | None = None,
    aggregated: Callable[[AggrCols], list[tuple]] | None = None,
) -> tuple[ArmData, Query]:
    """Per-arm aggregates of `cols` for one experiment (one query over the log); also returns the sessions query.

    `grouped` is the experiment's sessions already grouped for these `filters` (a query over
    `sessions_sql`'s output, such as a temporary table), with the strategy and data quality that
    `plan` gave for them, used instead of planning and grouping the log's events again.
    `aggregated(cols)`, given with `grouped`, returns the rows that `aggregates_sql(users_sql(sessions), cols)`
    would: a caller that sums them from a query of its own (the dashboard's day-by-day effect)
    saves grouping the users a second time.
    """
    info = log.resolve_experiment(experiment)
    if grouped is None:
        strategy, quality = plan(log, info.name)
        sessions = sessions_sql(info.name, strategy, filters, errors=Columns.ERROR in log.columns)
    else:
        sessions, strategy, quality = grouped
    if aggregated is not None:
        if grouped is None:
            raise ValueError("aggregated needs grouped: the aggregates of sessions that the caller grouped")
        rows = aggregated(cols)
    else:
        query = aggregates_sql(users_sql(sessions), cols)
        rows = log.con.execute(query.sql, query.params).fetchall()
    if not rows:
        unknown = log.unknown_experiment_error(info.name)
        if unknown is not None:
            raise unknown
        described = (filters or Filters()).describe()
        raise AbtestError(
            f"experiment {info.name!r} has no completed sessions in log {log.source!r}"
            + (f" after filters ({described})" if described else "")
            + (f"; {quality.describe()}" if quality.dropped else "")
        )
    aggregates = parse_aggregates(rows, cols)
    observed = max(aggregates) + 1
    treatments = info.treatments or observed
    if observed > treatments:
        logger.warning("experiment %r: events name treatment %d, the declaration has %d", info.name, observed - 1, treatments)
    data = ArmData(
        info=info,
        treatments=treatments,
        aggregates=aggregates,
        mixed_users=sum(int(row[2]) for row in rows),
        first=min(row[3] for row in rows),
        last=max(row[4] for row in rows),
        strategy=strategy,
        quality=quality,
    )
    return data, sessions


def check_arms(data: ArmData, control: int, treatments: Sequence[int] | None) -> tuple[int, ...]:
    """Validated treatment indices to compare with `control` (default: every other treatment)."""
    n = data.treatments
    name = data.info.name
    for arm in (control, *(treatments or ())):
        if not 0 <= arm < n:
            raise AbtestError(f"treatment {arm} is not in experiment {name!r}: it has treatments 0..{n - 1}")
    chosen = tuple(treatments) if treatments else tuple(i for i in range(n) if i != control)
    if control in chosen:
        raise AbtestError(f"control == treatment == {control}: compare two different treatments")
    if not chosen:
        raise AbtestError(f"experiment {name!r} has a single treatment; nothing to compare with {control}")
    for role, arm in (("control", control), *(("treatment", t) for t in chosen)):
        users = data.aggregates.get(arm)
        if users is None or users.count == 0:
            raise AbtestError(f"{role} arm (treatment {arm}) of experiment {name!r} has no users in the log")
    return chosen


class Experiment:
    """A set of metrics and statistical options; `analyze` turns a log into a `Report`.

    Args:
        metrics: Metric name -> metric object; default: the five report metrics (`default_metrics`).
        alpha: Significance level (default from `abtest.config`).
        relative: Relative interval method, 'fieller' or 'delta'.
        estimand: 'user-mean' or 'ratio-of-sums' for the default metrics.
        correction: Multiple-testing correction over metrics x treatments ('holm', ..., 'none').
        srm_alpha: p-value under which the sample ratio mismatch warning fires.
    """

    def __init__(
        self,
        metrics: dict[str, MetricBaseAggregated] | None = None,
        *,
        alpha: float | None = None,
        relative: str | None = None,
        estimand: str | None = None,
        correction: str | None = None,
        srm_alpha: float | None = None,
    ) -> None:
        self.alpha = resolve("alpha", alpha)
        self.relative = resolve("relative", relative)
        self.estimand = resolve("estimand", estimand)
        self.correction = resolve("correction", correction)
        self.srm_alpha = resolve("srm_alpha", srm_alpha)
        self.defaulted = not metrics
        self.metrics = metrics or default_metrics(estimand=self.estimand, alpha=self.alpha, relative=self.relative)

    def _metrics_for(self, log: EventLog) -> dict[str, MetricBaseAggregated]:
        """The metrics to report on `log`: by default error_rate and slow_rate join when the log records any error."""
        if not self.defaulted or Columns.ERROR not in log.columns:
            return self.metrics
        found = log.con.execute(f"SELECT 1 FROM {EVENTS_TABLE} WHERE {quote(Columns.ERROR)} IS NOT NULL LIMIT 1").fetchone()
        if found is None:
            return self.metrics
        extra = default_metrics(ERROR_METRICS, estimand=self.estimand, alpha=self.alpha, relative=self.relative)
        return {**self.metrics, **extra}

    @property
    def aggr_cols(self) -> AggrCols:
        """Union of every metric's per-user columns."""
        cols = AggrCols()
        for metric in self.metrics.values():
            cols = cols | metric.aggr_cols
        return cols

    def analyze(
        self,
        log: EventLog,
        *,
        experiment: str | None = None,
        control: int = 0,
        treatments: Sequence[int] | None = None,
        filters: Filters | None = None,
        timeseries: bool = False,
        grouped: tuple[Query, str, Quality] | None = None,
        aggregated: Callable[[AggrCols], list[tuple]] | None = None,
        truth: str | Path | None = None,
        truth_found: bool = False,
        adjust: Sequence[str] = (),
    ) -> Report:
        """Compare `treatments` (default: all others) with `control` in `experiment` (default: the serving one).

        Args:
            log: An open event log.
            experiment: Experiment name; None picks the serving experiment (see `EventLog.resolve_experiment`).
            control: Treatment index of the control arm.
            treatments: Treatment indices to compare with the control.
            filters: Session filters (dates, simulated days, recommenders).
            timeseries: Also compute per-arm session metrics over time (for the HTML report's plots).
            grouped: The sessions already grouped for these filters, their strategy and data quality (see `arm_data`).
            aggregated: With `grouped`, the per-arm aggregates of their users for given columns (see `arm_data`).
            truth: A truth file (potential outcomes, `abtest.truth`): each row then shows the true effect.
            truth_found: `truth` was found beside the log, not asked for: an experiment it holds
                no sessions of is reported without it instead of failing.
            adjust: Variance reductions to add beside the unadjusted rows: 'cuped', 'cupac' (`abtest.cuped`).
        """
        metrics = self._metrics_for(log)
        cols = AggrCols()
        for metric in metrics.values():
            cols = cols | metric.aggr_cols
        data, sessions = arm_data(log, cols, experiment=experiment, filters=filters, grouped=grouped, aggregated=aggregated)
        chosen = check_arms(data, control, treatments)
        users = {arm: data.aggregates[arm].count if arm in data.aggregates else 0 for arm in range(data.treatments)}
        srm = stats.srm([users[arm] for arm in range(data.treatments)], srm_alpha=self.srm_alpha)
        rows = []
        for treatment in chosen:
            for name, metric in metrics.items():
                result = metric.analyze_aggregates(data.aggregates, control, treatment)
                rows.append((name, treatment, result))
        adjusted, reject = stats.adjust([r[2].p_value for r in rows], method=self.correction, alpha=self.alpha)
        warnings = []
        if srm.mismatch:
            warnings.append(srm_warning(srm, self.srm_alpha))
        if data.mixed_users:
            warnings.append(
                f"{data.mixed_users} user(s) appear in more than one treatment; each counts in its smallest index"
            )
        series = session_timeseries(log, sessions, data.first, data.last) if timeseries else None
        effects = None
        if truth is not None and truth_found and data.info.name not in truth_experiments(truth):
            truth = None
        if truth is not None:
            if (filters or Filters()).describe():
                raise AbtestError("the truth covers the whole experiment: drop the filters to compare with it")
            outcomes = potential_outcomes(truth, data.info.name)
            effects = {(name, t): true_effect(metric, outcomes, control, t) for name, t, _ in rows for metric in [metrics[name]]}
        reduced = adjusted_rows(self, log, data.info.name, control, chosen, filters, adjust) if adjust else []
        if effects is not None:
            for row in reduced:
                effects.setdefault((row.metric, row.treatment), true_effect(metrics[row.metric], outcomes, control, row.treatment))
        return Report(
            source=log.source,
            experiment=data.info.name,
            control=control,
            treatments=chosen,
            recommenders=data.info.recommenders,
            alpha=self.alpha,
            relative=self.relative,
            estimand=self.estimand,
            correction=self.correction,
            rows=[
                ReportRow(metric=name, treatment=t, result=r, p_value_adj=float(p), significant_adj=bool(rej),
                          higher_is_better=metrics[name].higher_is_better)
                for (name, t, r), p, rej in zip(rows, adjusted, reject, strict=True)
            ],
            users=users,
            srm=srm,
            filters=(filters or Filters()).describe(),
            strategy=data.strategy,
            quality=data.quality,
            warnings=warnings,
            timeseries=series,
            truth=effects,
            adjusted=reduced,
            truth_source=str(truth or ""),
        )


def adjusted_rows(
    experiment: Experiment,
    log: EventLog,
    name: str,
    control: int,
    treatments: Sequence[int],
    filters: Filters | None,
    methods: Sequence[str],
) -> list[AdjustedRow]:
    """CUPED/CUPAC rows for every metric with a pre-period covariate (`abtest.cuped`), one per method and treatment."""
    unknown = [m for m in methods if m not in cuped.METHODS]
    if unknown:
        raise AbtestError(f"variance reduction {', '.join(unknown)} is unknown; choose from {', '.join(cuped.METHODS)}")
    columns = tuple(dict.fromkeys(c for metric in experiment.metrics.values() for c in cuped.metric_columns(metric) if c))
    columns = tuple(dict.fromkeys((*columns, *cuped.PRE_VALUES)))
    _, values = user_values(log, columns, experiment=name, filters=filters)
    sql, params = cuped.pre_period_sql(name)
    pre = cuped.align_pre(values[UserColumns.USER], log.con.execute(sql, params).fetchnumpy())  # type: ignore[arg-type]
    if not np.isfinite(pre[UserColumns.SESSIONS]).any():
        raise AbtestError(
            f"experiment {name!r} has no pre-period in log {log.source!r}: no user has a completed session before its first event "
            "(simulate days before it, e.g. `python -m sim.run ... experiment --pre-days 7`)"
        )
    rows = []
    for treatment in treatments:
        for metric_name, metric in experiment.metrics.items():
            numer, denom = cuped.metric_columns(metric)
            for method in methods:
                covariate = cuped.covariate_for(metric, pre) if method == "cuped" else cuped.cupac_covariate(metric, values, pre)
                if covariate is None:
                    continue
                fit = cuped.cuped(values[numer], None if denom is None else values[denom], covariate, values[UserColumns.ARM],
                                  control=control, treatment=treatment, extra=pre.get(cuped.EXPOSURE) if method == "cuped" else None)
                cmp = stats.compare(fit.control, fit.treatment, alpha=experiment.alpha, relative=experiment.relative)
                result = MetricResult(
                    control_mean=float(fit.control.value), treatment_mean=float(fit.treatment.value), effect=float(cmp.effect),
                    lower=float(cmp.lower), upper=float(cmp.upper), p_value=float(cmp.p_value), significant=bool(cmp.significant),
                    diff=float(cmp.diff), diff_lower=float(cmp.diff_lower), diff_upper=float(cmp.diff_upper),
                    statistic=float(cmp.statistic), df=float(cmp.df), control_users=int(fit.control.df) + 1,
                    treatment_users=int(fit.treatment.df) + 1, method=f"{method}+{experiment.relative}",
                )
                rows.append(AdjustedRow(metric_name, treatment, method, result, fit.variance_reduction))
    return rows


def srm_warning(srm: stats.SrmResult, srm_alpha: float) -> str:
    """The loud sample-ratio-mismatch message."""
    observed = " / ".join(str(n) for n in srm.observed)
    expected = " / ".join(f"{x:.0f}" for x in srm.expected)
    return (
        f"SAMPLE RATIO MISMATCH: users per treatment {observed}, expected {expected} from the configured split "
        f"(chi-square p = {srm.p_value:.3g} < {srm_alpha:g}). Assignment or logging is broken; "
        "do not trust these effects."
    )


def session_timeseries(log: EventLog, sessions: Query, first: dt.datetime, last: dt.datetime) -> pd.DataFrame:
    """Per arm and time bin: sessions started, mean time and mean tracks per session."""
    width = bin_width(first, last)
    s = SessionColumns
    sql = f"""
        SELECT {s.ARM} AS arm,
               {time_bin_sql(s.START, width)} AS bin,
               count(*) AS sessions,
               avg({quote(s.TIME)}) AS mean_time_per_session,
               avg({s.TRACKS}) AS mean_tracks_per_session
        FROM ({sessions.sql})
        GROUP BY ALL ORDER BY arm, bin"""
    frame = log.con.execute(sql, sessions.params).df()
    frame.attrs["bin_seconds"] = width
    return frame


def user_values(
    log: EventLog,
    columns: Sequence[str],
    *,
    experiment: str | None = None,
    filters: Filters | None = None,
) -> tuple[ExperimentInfo, dict[str, np.ndarray]]:
    """Per-user values (user id, arm and `columns`) as numpy arrays, for re-randomisation (`abtest aa`).

    Users are far fewer than events, so this fits in memory where the events would not.
    """
    info = log.resolve_experiment(experiment)
    strategy, _ = plan(log, info.name)
    users = users_sql(sessions_sql(info.name, strategy, filters, errors=Columns.ERROR in log.columns))
    u = UserColumns
    wanted = [u.USER, u.ARM, *columns]
    sql = f"SELECT {', '.join(quote(c) for c in wanted)} FROM ({users.sql}) ORDER BY {quote(u.USER)}"
    arrays = log.con.execute(sql, users.params).fetchnumpy()
    if len(arrays[u.USER]) == 0:
        raise log.unknown_experiment_error(info.name) or AbtestError(
            f"experiment {info.name!r} has no completed sessions in log {log.source!r}"
        )
    return info, {name: np.asarray(arrays[name]) for name in wanted}
