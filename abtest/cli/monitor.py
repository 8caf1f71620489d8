"""`abtest monitor`: an experiment day by day, with the day a sequential test could have stopped it."""

from __future__ import annotations

import click

from abtest.cli.options import LogQuery, log_options, open_log, user_errors
from abtest.config import resolve
from abtest.metrics import METRIC_NAMES, default_metrics
from abtest.monitor import METHODS, monitor


@click.command("monitor")
@click.option("--control", type=int, default=0, show_default=True, help="Treatment index of the control arm.")
@click.option("--treatment", type=int, default=1, show_default=True, help="Treatment index compared with the control.")
@click.option("--metric", type=click.Choice(METRIC_NAMES), default="time", show_default=True, help="Metric to monitor.")
@click.option("--looks", type=click.Choice(["daily"]), default="daily", show_default=True, help="When to look: the end of every day.")
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="obf",
    show_default=True,
    help="Lan-DeMets O'Brien-Fleming or Pocock spending over the planned looks, or the always-valid confidence sequence.",
)
@click.option(
    "--planned-days",
    type=click.IntRange(min=1),
    default=None,
    help="Daily looks planned, for an experiment still running  [default: the days the log spans].",
)
@click.option(
    "--planned-users",
    type=click.IntRange(min=2),
    default=None,
    help="Users (both arms) expected at the planned end, where the confidence sequence is tightest  [default: those of the last look].",
)
@click.option("--alpha", type=float, default=None, help="Two-sided level of the whole sequential test  [default: 0.05].")
@click.option(
    "--estimand",
    type=click.Choice(["user-mean", "ratio-of-sums"]),
    default=None,
    help="Per-session metrics as the mean of per-user values or as a ratio of sums  [default: user-mean].",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@log_options
def monitor_command(
    control: int, treatment: int, metric: str, looks: str, method: str, planned_days: int | None, planned_users: int | None, alpha: float | None,
    estimand: str | None, fmt: str, query: LogQuery,
) -> None:
    """Look at the experiment at the end of every day and say whether it could stop.

    Each look analyses every session started so far; the relative effect's z must cross the
    day's boundary (group-sequential alpha spending, or the confidence sequence) to stop, which
    keeps the chance of a false stop over all looks at alpha. Prints the cumulative estimate,
    the sequential interval, the boundary and the first day the experiment could have stopped.
    """
    del looks  # daily is the only schedule so far
    if query.filters.describe():
        raise click.ClickException("monitor looks at the whole experiment day by day: drop the session filters")
    if control == treatment:
        raise click.BadParameter(f"control == treatment == {control}: compare two different treatments", param_hint="--treatment")
    with user_errors():
        level = resolve("alpha", alpha)
        if not 0 < level < 1:
            raise click.BadParameter(f"{level}, must be in (0, 1)", param_hint="--alpha")
        chosen = default_metrics((metric,), estimand=estimand, alpha=level)[metric]
    with open_log(query.path) as log, user_errors(log):
        result = monitor(
            log, metric, chosen, experiment=query.experiment, control=control, treatment=treatment, method=method, alpha=level,
            day_zero=query.filters.day_zero, planned_days=planned_days, planned_users=planned_users,
        )
    click.echo(result.to_string(fmt), nl=False)
