"""`abtest aa`: A/A calibration by re-salting the assignment hash over the logged users."""

from __future__ import annotations

import sys

import click

from abtest.calibration import Calibration, run_aa
from abtest.cli.options import PERCENT, LogQuery, StatChoice, log_options, open_log, stat_options, user_errors
from abtest.config import resolve
from abtest.experiment import user_values
from abtest.metrics import MetricBaseAggregated, RatioOfSums, UserColumns

# --strict fails only when a figure is off at this level, so a calibrated procedure fails it
# about once in 1,000 checks per figure (the table's intervals use alpha and would fail 1 in 20).
STRICT_LEVEL = 0.001


@click.command()
@click.option("--runs", type=click.IntRange(min=1), default=1000, show_default=True, help="Number of re-splits.")
@click.option("--inject", type=PERCENT, default=None, help="Known relative effect added to one half, e.g. 5%.")
@click.option(
    "--arm",
    default="0",
    show_default=True,
    help="Users to re-split: a treatment index (a pure A/A population), or 'all'.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Chooses another family of re-salted splits.")
@click.option(
    "--strict",
    is_flag=True,
    help=f"Exit 1 when the false-positive rate or coverage is off (exact binomial test at level {STRICT_LEVEL:g}) "
    f"or the p-values are not uniform (KS p < {STRICT_LEVEL:g}).",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@log_options
@stat_options
def aa(
    runs: int,
    inject: float | None,
    arm: str,
    seed: int,
    strict: bool,
    fmt: str,
    query: LogQuery,
    stat: StatChoice,
) -> None:
    """Check the statistics on the log itself: re-split users many times with no true effect.

    Reports per metric the false-positive rate at alpha with its exact binomial interval and a
    Kolmogorov-Smirnov test of the p-values' uniformity. With --inject, one half of every split
    gets a known relative effect, and the report adds interval coverage and power.
    """
    if arm != "all" and not arm.lstrip("-").isdigit():
        raise click.BadParameter(f"{arm!r}, must be a treatment index or 'all'", param_hint="--arm")
    with open_log(query.path) as log, user_errors(log):
        alpha = resolve("alpha", stat.alpha)
        chosen = _ratio_metrics(stat.chosen(alpha))
        columns = sorted({c for m in chosen.values() for c in (m.numer, m.denom) if c is not None})
        info, values = user_values(log, columns, experiment=query.experiment, filters=query.filters)
        if arm != "all":
            keep = values[UserColumns.ARM] == int(arm)
            if not keep.any():
                raise click.ClickException(f"treatment {arm} of experiment {info.name!r} has no users in the log")
            values = {name: array[keep] for name, array in values.items()}
        with click.progressbar(length=runs, label="A/A re-splits", file=sys.stderr) as bar:
            results = run_aa(
                values[UserColumns.USER],
                values,
                chosen,
                runs=runs,
                inject=inject,
                alpha=alpha,
                relative=stat.relative,
                salt=info.name,
                seed=seed,
                progress=bar.update,
            )
    calibration = Calibration(info.name, "all arms" if arm == "all" else f"treatment {arm}", alpha, inject, results)
    click.echo(calibration.to_string(fmt), nl=False)
    if strict:
        problems = calibration.problems(STRICT_LEVEL)
        if problems:
            raise click.ClickException("A/A calibration failed: " + "; ".join(problems))


def _ratio_metrics(chosen: dict[str, MetricBaseAggregated]) -> dict[str, RatioOfSums]:
    """The chosen metrics as means or ratios of sums, the kinds an A/A re-split can recompute per split."""
    others = [name for name, metric in chosen.items() if not isinstance(metric, RatioOfSums)]
    if others:
        raise click.ClickException(f"metric(s) {', '.join(others)} are neither means nor ratios of sums; `abtest aa` checks those")
    return {name: metric for name, metric in chosen.items() if isinstance(metric, RatioOfSums)}
