"""`abtest validate`: the report's methods checked against the truth over re-randomised experiments."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from abtest.cli.options import LogQuery, StatChoice, log_options, open_log, stat_options, user_errors
from abtest.config import resolve
from abtest.cuped import align_pre, pre_period_sql
from abtest.metrics import UserColumns
from abtest.truth import TRUTH_VALUES, daily_cumulative_time, find_truth, potential_outcomes
from abtest.validate import DESIGNS, METHODS, validate


@click.command("validate")
@click.option("--control", type=int, default=0, show_default=True, help="Treatment index of the control arm.")
@click.option("--treatment", type=int, default=1, show_default=True, help="Treatment index compared with the control.")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Truth file (python -m sim.run ... truth)  [default: the one beside LOG].")
@click.option("--runs", type=click.IntRange(min=1), default=1000, show_default=True, help="Re-randomisations.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the re-randomisations.")
@click.option("--method", "methods", type=click.Choice(METHODS), multiple=True, help="Methods to check (repeatable; default: all).")
@click.option("--design", type=click.Choice(DESIGNS), default="finite", show_default=True,
              help="finite: these listeners, the coin re-drawn; superpopulation: the listeners re-drawn with replacement too.")
@click.option("--peeking/--no-peeking", default=True, show_default=True, help="Also the daily-peeking false-positive check (A/A).")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True)
@log_options
@stat_options
def validate_command(
    control: int, treatment: int, truth: Path | None, runs: int, seed: int, methods: tuple[str, ...], design: str, peeking: bool,
    fmt: str, query: LogQuery, stat: StatChoice,
) -> None:
    """Check every method against the true effect over re-randomised experiments.

    Each run assigns the experiment's listeners to the two arms by a fair coin and gives each
    the outcome stored for that arm in the truth file (with `--design superpopulation` the
    listeners are first re-drawn with replacement, so the intervals are checked against the
    effect on the population the listeners come from); per metric and method it reports bias,
    coverage of the true effect, power, mean interval width and variance reduction, and the
    false-positive rate of daily peeking against the confidence sequence's.
    """
    path = truth or find_truth(query.path)
    if path is None or not path.is_file():
        raise click.ClickException(
            f"no truth file {'at ' + str(path) if path else 'beside ' + query.path}; write one with `python -m sim.run ... truth`"
        )
    if query.filters.describe():
        raise click.ClickException("the truth covers the whole experiment: drop the filters")
    alpha = resolve("alpha", stat.alpha)
    metrics = {name: metric for name, metric in stat.chosen(alpha).items() if all(c in TRUTH_VALUES for c in metric.aggr_cols.mean_cols)}
    with open_log(query.path) as log, user_errors(log):
        info = log.resolve_experiment(query.experiment)
        outcomes = potential_outcomes(path, info.name)
        users = outcomes[min(outcomes)][UserColumns.USER]
        sql, params = pre_period_sql(info.name)
        pre = align_pre(users, log.con.execute(sql, params).fetchnumpy())
        has_pre = bool(np.isfinite(pre[UserColumns.SESSIONS]).any())
        daily = daily_cumulative_time(path, info.name, control, users) if peeking else None
        result = validate(
            outcomes, pre if has_pre else None, metrics, control=control, treatment=treatment, runs=runs, seed=seed,
            alpha=alpha, relative=stat.relative or resolve("relative", None), methods=methods or METHODS, daily=daily,
            experiment=info.name, design=design,
        )
        if not has_pre:
            result.notes.append("no pre-period in the log: CUPED and CUPAC left out")
    click.echo(result.to_string(fmt), nl=False)

