"""Options shared by the `abtest` subcommands, their parameter types, and the user-error boundary."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click
import duckdb

from abtest import exact
from abtest.errors import AbtestError
from abtest.experiment import Experiment
from abtest.log import EventLog, duckdb_message
from abtest.metrics import METRIC_NAMES, MetricBaseAggregated, default_metrics
from abtest.report import Report
from abtest.sessionize import DAY_ZERO, Filters

DEFAULT_LOG = "data/events.duckdb"
_DATES = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


class Percent(click.ParamType):
    """A percentage such as '2%' or '2' (both mean 0.02); '-1.5%' for negative effects."""

    name = "percent"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip().removesuffix("%")
        try:
            return float(text) / 100.0
        except ValueError:
            self.fail(f"{value!r} is not a percentage (write e.g. 2% or 0.5%)", param, ctx)


class DayRange(click.ParamType):
    """Simulated days 'FIRST:LAST' (half-open, from midnight of the first event's day), e.g. '0:7'."""

    name = "first:last"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, float]:
        if isinstance(value, tuple):
            return value
        first, sep, last = str(value).partition(":")
        try:
            if not sep:
                raise ValueError
            days = (float(first), float(last))
        except ValueError:
            self.fail(f"{value!r} is not a day range FIRST:LAST such as 0:7", param, ctx)
        if not days[0] < days[1]:
            self.fail(f"{value!r}: the first day must be before the last", param, ctx)
        return days


class DayZero(click.ParamType):
    """The date of simulated day 0 (YYYY-MM-DD), or 'first' for the day of the experiment's first event."""

    name = "date|first"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.date | None:
        if value is None or isinstance(value, dt.date):
            return value
        if str(value).strip().lower() == "first":
            return None
        try:
            return dt.date.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is neither a date YYYY-MM-DD nor 'first'", param, ctx)


PERCENT = Percent()


@contextlib.contextmanager
def user_errors(log: EventLog | None = None) -> Iterator[None]:
    """Turn library errors about the user's input into a clean ClickException (message, exit code 1).

    With `log`, a DuckDB error while reading it (e.g. Parquet segments that were moved or
    deleted behind the log's views) becomes a message naming the log, not a traceback.
    """
    try:
        yield
    except AbtestError as exc:
        raise click.ClickException(str(exc)) from exc
    except duckdb.Error as exc:
        if log is None:
            raise
        hint = ""
        if isinstance(exc, duckdb.IOException):
            hint = (
                "; a service log reads its events from the `<name>.segments` directory next to it: keep the "
                "two together (`botify init-db --log PATH` re-points the views after moving both)"
            )
        elif isinstance(exc, (duckdb.ConversionException, duckdb.OutOfRangeException)):
            hint = (
                f"; values are summed exactly as {exact.DECIMAL}, so each must stay below {exact.LIMIT}: "
                "check the log's `time` (a fraction) and `latency` (seconds) columns"
            )
        raise click.ClickException(f"cannot read log {log.source!r}: {duckdb_message(exc)}{hint}") from exc


def open_log(path: str) -> EventLog:
    """Open the log, failing with a message that names the path."""
    with user_errors():
        return EventLog.open(path)


@dataclass(frozen=True)
class LogQuery:
    """What the shared log options ask for: the log, the experiment, and which sessions count."""

    path: str
    experiment: str | None
    filters: Filters


strict_option = click.option(
    "--strict",
    is_flag=True,
    help="Fail (exit 1) if any row of the experiment has a NULL key or a value outside its domain, "
    "instead of dropping and counting it on the report's data-quality line.",
)


def refuse_dropped(report: Report, strict: bool) -> None:
    """Under --strict, a ClickException when the analysis dropped any row (the data-quality line says why)."""
    if strict and report.quality is not None and report.quality.dropped:
        raise click.ClickException(
            f"--strict: experiment {report.experiment!r} in log {report.source!r}: {report.quality.describe()}"
        )


def log_options(func: Callable) -> Callable:
    """Add --log, --experiment and the session filters; the command receives them as `query: LogQuery`."""

    @functools.wraps(func)
    def command(
        *,
        log_path: str,
        experiment: str | None,
        since: Any,
        until: Any,
        days: tuple[float, float] | None,
        day_zero: dt.date | None,
        recommenders: tuple[str, ...],
        include_open_sessions: bool,
        **kwargs: Any,
    ) -> Any:
        filters = make_filters(since, until, days, day_zero, recommenders, include_open_sessions)
        return func(query=LogQuery(log_path, experiment, filters), **kwargs)

    options = [
        click.option(
            "--log",
            "log_path",
            default=DEFAULT_LOG,
            show_default=True,
            help="Event log: a DuckDB file with table/view `events`, a `botify export` directory, or Parquet "
            "file(s)/dir/glob with its columns.",
        ),
        click.option(
            "--experiment",
            default=None,
            help="Experiment name (default: the serving experiment started last, or the only one in the log).",
        ),
        click.option("--since", type=click.DateTime(_DATES), default=None, help="Only sessions starting at/after this time."),
        click.option("--until", type=click.DateTime(_DATES), default=None, help="Only sessions starting before this time."),
        click.option(
            "--days",
            type=DayRange(),
            default=None,
            help="Only sessions starting in simulated days FIRST:LAST (half-open, counted as the service counts "
            "them from --day-zero), e.g. 1:8 for sim.run's first week.",
        ),
        click.option(
            "--day-zero",
            type=DayZero(),
            default=DAY_ZERO.isoformat(),
            show_default=True,
            help="Date of simulated day 0 for --days (the service's `day_zero`), or 'first': the day of the "
            "experiment's first event.",
        ),
        click.option(
            "--recommender",
            "recommenders",
            multiple=True,
            help="Only sessions with an event served by this recommender (repeatable).",
        ),
        click.option(
            "--include-open-sessions",
            is_flag=True,
            help="Also count sessions without a 'last' event yet (dropped by default, as in the course).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@dataclass(frozen=True)
class StatChoice:
    """What the shared statistics options ask for: metrics, alpha, relative interval and estimand."""

    metrics: tuple[str, ...]
    alpha: float | None
    relative: str | None
    estimand: str | None

    def chosen(self, alpha: float | None = None) -> dict[str, MetricBaseAggregated]:
        """The metrics asked for (all by default), at `alpha` when given, else at --alpha."""
        return default_metrics(
            self.metrics or None, estimand=self.estimand, alpha=self.alpha if alpha is None else alpha, relative=self.relative
        )

    def experiment(self, correction: str | None) -> Experiment:
        """The analysis these options describe, with a multiple-testing `correction`."""
        return Experiment(
            self.chosen() if self.metrics else None, alpha=self.alpha, relative=self.relative, estimand=self.estimand, correction=correction
        )


def stat_options(func: Callable) -> Callable:
    """Add --metric, --alpha, --relative and --estimand; the command receives them as `stat: StatChoice`."""

    @functools.wraps(func)
    def command(
        *, metrics: tuple[str, ...], alpha: float | None, relative: str | None, estimand: str | None, **kwargs: Any
    ) -> Any:
        return func(stat=StatChoice(tuple(metrics), alpha, relative, estimand), **kwargs)

    options = [
        click.option(
            "--metric",
            "metrics",
            multiple=True,
            type=click.Choice(METRIC_NAMES),
            help="Metric to analyse (repeatable; default: all).",
        ),
        click.option("--alpha", type=float, default=None, help="Significance level  [default: 0.05]."),
        click.option(
            "--relative",
            type=click.Choice(["fieller", "delta"]),
            default=None,
            help="Relative interval: Fieller with Welch's t (p-value = Welch's), or the delta method  [default: fieller].",
        ),
        click.option(
            "--estimand",
            type=click.Choice(["user-mean", "ratio-of-sums"]),
            default=None,
            help="Per-session metrics as the mean of per-user values (course) or as a ratio of sums over the arm "
            "(delta method)  [default: user-mean].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_filters(
    since: Any,
    until: Any,
    days: tuple[float, float] | None,
    day_zero: dt.date | None,
    recommenders: tuple[str, ...],
    include_open: bool,
) -> Filters:
    """The Filters of the shared options, with validation errors as ClickExceptions."""
    with user_errors():
        return Filters(
            since=since,
            until=until,
            days=days,
            day_zero=day_zero,
            recommenders=tuple(recommenders),
            include_open=include_open,
        )
