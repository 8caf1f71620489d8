"""`abtest power`: minimum detectable effect for the users at hand, or users needed for an effect."""

from __future__ import annotations

import json
import math

import click

from abtest import stats
from abtest.cli.options import PERCENT, LogQuery, log_options, open_log, user_errors
from abtest.config import resolve
from abtest.experiment import Experiment, arm_data, check_arms
from abtest.metrics import METRIC_NAMES, default_metrics


@click.command()
@click.option("--control", type=int, default=0, show_default=True, help="Arm whose variance is used.")
@click.option("--treatment", type=int, default=None, help="Arm whose size is used (default: the first other arm).")
@click.option("--effect", type=PERCENT, default=None, help="Relative effect to detect, e.g. 2%: prints the users needed.")
@click.option("--power", "target_power", type=float, default=None, help="Target power  [default: 0.8].")
@click.option("--alpha", type=float, default=None, help="Two-sided significance level  [default: 0.05].")
@click.option("--metric", "metrics", multiple=True, type=click.Choice(METRIC_NAMES), help="Metric (repeatable; default: all).")
@click.option(
    "--estimand", type=click.Choice(["user-mean", "ratio-of-sums"]), default=None, help="As for `abtest report`."
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@log_options
def power(
    control: int,
    treatment: int | None,
    effect: float | None,
    target_power: float | None,
    alpha: float | None,
    metrics: tuple[str, ...],
    estimand: str | None,
    fmt: str,
    query: LogQuery,
) -> None:
    """Minimum detectable effect (MDE) at the current users per arm, from the log's own variance.

    With --effect, also the users per arm needed to detect that relative effect. Two-sided
    t-test power (statsmodels' TTestIndPower), per-user standard deviation of the control arm.
    """
    with open_log(query.path) as log, user_errors(log):
        alpha = resolve("alpha", alpha)
        target_power = resolve("power", target_power)
        chosen = default_metrics(metrics or None, estimand=estimand, alpha=alpha)
        data, _ = arm_data(log, Experiment(chosen).aggr_cols, experiment=query.experiment, filters=query.filters)
        others = [t for t in range(data.treatments) if t != control]
        if treatment is None and not others:
            raise click.ClickException(f"experiment {data.info.name!r} has a single treatment")
        treatment = others[0] if treatment is None else treatment
        check_arms(data, control, [treatment])
        n_c, n_t = data.aggregates[control].count, data.aggregates[treatment].count
        rows = []
        for name, metric in chosen.items():
            est = metric.estimate(data.aggregates[control])
            sd = math.sqrt(est.variance * n_c)
            row = {
                "metric": name,
                "control_mean": float(est.value),
                "sd_per_user": sd,
                "control_users": n_c,
                "treatment_users": n_t,
                "mde": 100 * stats.mde(sd, float(est.value), n_c, n_t, alpha=alpha, power=target_power),
            }
            if effect is not None:
                need_c, need_t = stats.users_needed(
                    effect, sd, float(est.value), ratio=n_t / n_c, alpha=alpha, power=target_power
                )
                row.update(effect=100 * effect, users_needed_control=need_c, users_needed_treatment=need_t)
            rows.append(row)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        f"experiment {data.info.name!r}: control {control} ({n_c} users) vs treatment {treatment} ({n_t} users); "
        f"alpha {alpha:g}, power {target_power:g}, two-sided"
    )
    for row in rows:
        line = f"{row['metric']:<24} mean {row['control_mean']:<10.5g} sd {row['sd_per_user']:<10.4g} MDE {row['mde']:.2f}%"
        if effect is not None:
            line += (
                f"   users for {row['effect']:g}%: {row['users_needed_control']} + {row['users_needed_treatment']}"
            )
        click.echo(line)
