"""`abtest report`: the A/B table of one experiment, as text, Markdown, CSV, JSON or HTML."""

from __future__ import annotations

from pathlib import Path

import click

from abtest.cli.options import LogQuery, StatChoice, log_options, open_log, refuse_dropped, stat_options, strict_option, user_errors
from abtest.report import FORMATS
from abtest.sessionize import Filters
from abtest.truth import find_truth


@click.command()
@click.option("--control", type=int, default=0, show_default=True, help="Treatment index of the control arm.")
@click.option(
    "--treatment",
    "treatments",
    type=int,
    multiple=True,
    help="Treatment index to compare with the control (repeatable; default: every other treatment).",
)
@log_options
@stat_options
@click.option(
    "--correction",
    type=click.Choice(["holm", "bonferroni", "fdr_bh", "none"]),
    default=None,
    help="Correction over all metrics x treatments, shown beside the raw p-values  [default: holm].",
)
@strict_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Truth file (potential outcomes from `python -m sim.run ... truth`) to show each true effect beside its estimate  [default: LOG's, when it exists].",
)
@click.option(
    "--adjust",
    type=click.Choice(["cuped", "cupac"]),
    multiple=True,
    help="Also show each metric variance-reduced with the users' pre-period (repeatable): CUPED on the metric's own pre-period value, CUPAC on a regression's prediction.",
)
@click.option("--no-truth", is_flag=True, help="Ignore a truth file beside the log.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None, help="Write to this file instead of stdout.")
def report(
    control: int,
    treatments: tuple[int, ...],
    query: LogQuery,
    stat: StatChoice,
    correction: str | None,
    fmt: str,
    truth: Path | None,
    no_truth: bool,
    adjust: tuple[str, ...],
    output: str | None,
    strict: bool,
) -> None:
    """Compare treatments with the control: effect in % of the control mean, interval, p-value, significance.

    Metrics are per-user values averaged over users (the course's definitions); the unit of
    analysis is the user, never the session. A sample-ratio-mismatch check runs on every report
    and warns loudly (also on stderr) when the users per arm do not fit the configured split.
    Rows with a NULL key or a value outside its domain are dropped and counted on the report's
    data-quality line (JSON and CSV: `dropped_rows`, `data_quality`); --strict fails on any.
    """
    if truth is not None and not truth.is_file():
        raise click.BadParameter(f"{truth} does not exist; write it with `python -m sim.run ... truth`", param_hint="--truth")
    found = truth is None and not no_truth and not (query.filters or Filters()).describe()
    if found:
        truth = find_truth(query.path)  # the truth covers the whole experiment, so not beside filters
    with open_log(query.path) as log, user_errors(log):
        result = stat.experiment(correction).analyze(
            log,
            experiment=query.experiment,
            control=control,
            treatments=treatments or None,
            filters=query.filters,
            timeseries=fmt == "html",
            truth=None if no_truth else truth,
            truth_found=found,
            adjust=adjust,
        )
        refuse_dropped(result, strict)
        text = result.to_string(fmt)
    if found and truth is not None and result.truth is None:
        click.echo(f"{truth} holds no sessions of experiment {result.experiment!r}: reported without the truth", err=True)
    for warning in result.warnings:
        click.secho(f"WARNING: {warning}", fg="red", bold=True, err=True)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"report written to {output}", err=True)
    else:
        click.echo(text, nl=False)
