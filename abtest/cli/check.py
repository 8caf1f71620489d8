"""`abtest check`: a CI gate that fails when a treatment is significantly worse than allowed."""

from __future__ import annotations

import click

from abtest.cli.options import (
    PERCENT,
    LogQuery,
    StatChoice,
    log_options,
    open_log,
    refuse_dropped,
    stat_options,
    strict_option,
    user_errors,
)
from abtest.metrics import MetricResult
from abtest.report import Report


def verdict(
    metric: str, label: str, r: MetricResult, higher_is_better: bool, max_drop: float, non_inferiority: bool, alpha: float
) -> tuple[bool, str]:
    """(passed, one line saying why) for one metric and treatment."""
    level = f"{100 * (1 - alpha):g}% CI"
    interval = f"{100 * r.effect:+.2f}% ({level} {100 * r.lower:+.2f}% .. {100 * r.upper:+.2f}%)"
    worse = "drop" if higher_is_better else "rise"
    allowed = f"the allowed {100 * max_drop:g}% {worse}"
    # Distances in percentage points between the interval and the allowed limit, signed so > 0 fails.
    if higher_is_better:
        beyond = -max_drop - (r.lower if non_inferiority else r.upper)
    else:
        beyond = (r.upper if non_inferiority else r.lower) - max_drop
    failed = beyond >= 0 if non_inferiority else beyond > 0
    if not failed:
        return True, f"ok    {metric} ({label}): {interval}, within {allowed}"
    if non_inferiority:
        why = f"cannot rule out a {worse} beyond {allowed} ({'lower' if higher_is_better else 'upper'} bound is {100 * beyond:.2f} points past it)"
    else:
        why = f"significantly worse than {allowed}, by at least {100 * beyond:.2f} percentage points"
    return False, f"FAIL  {metric} ({label}): {interval}: {why}"


@click.command()
@click.option("--control", type=int, default=0, show_default=True, help="Treatment index of the control arm.")
@click.option("--treatment", "treatments", type=int, multiple=True, help="Treatment to gate (repeatable; default: all others).")
@click.option(
    "--max-drop",
    type=PERCENT,
    default="0%",
    show_default=True,
    help="Largest tolerated worsening, in % of the control mean (a drop, or a rise for latency).",
)
@click.option(
    "--non-inferiority",
    is_flag=True,
    help="Stricter: fail unless the interval rules out a worsening beyond --max-drop.",
)
@click.option("--ignore-srm", is_flag=True, help="Do not fail on a sample ratio mismatch (still warns).")
@strict_option
@log_options
@stat_options
def check(
    control: int,
    treatments: tuple[int, ...],
    max_drop: float,
    non_inferiority: bool,
    ignore_srm: bool,
    query: LogQuery,
    stat: StatChoice,
    strict: bool,
) -> None:
    """Exit 1 when a metric of a treatment is significantly worse than --max-drop allows.

    By default a metric fails when its whole interval lies beyond the allowed drop (a
    significant regression); with --non-inferiority it fails unless the interval lies within
    it. Latency counts as worse when it rises. A sample ratio mismatch fails the check too,
    unless --ignore-srm. Rows with a NULL key or a value outside its domain are dropped and
    counted (the data-quality line); with --strict any such row fails the check.
    """
    if max_drop < 0:
        raise click.BadParameter(f"{100 * max_drop:g}%, must be >= 0%", param_hint="--max-drop")
    with open_log(query.path) as log, user_errors(log):
        analysis = stat.experiment(correction="none")
        result: Report = analysis.analyze(
            log, experiment=query.experiment, control=control, treatments=treatments or None, filters=query.filters
        )
        refuse_dropped(result, strict)
    failures = []
    for row in result.rows:
        passed, line = verdict(
            row.metric,
            result.arm_label(row.treatment),
            row.result,
            analysis.metrics[row.metric].higher_is_better,
            max_drop,
            non_inferiority,
            result.alpha,
        )
        click.echo(line)
        if not passed:
            failures.append(line.removeprefix("FAIL  "))
    if result.srm.mismatch:
        click.secho(f"WARNING: {result.warnings[0]}", fg="red", bold=True, err=True)
        if not ignore_srm:
            failures.append(f"sample ratio mismatch (chi-square p = {result.srm.p_value:.3g})")
    if result.quality is not None:
        click.echo(result.quality.describe())
    if failures:
        raise click.ClickException(f"check failed for experiment {result.experiment!r}: " + "; ".join(failures))
    click.echo(f"check passed: {len(result.rows)} metric(s) of experiment {result.experiment!r}")
