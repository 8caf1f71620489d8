"""`abtest check`: a CI gate that fails when a treatment is significantly worse than allowed."""

from __future__ import annotations

import click

from abtest.budget import Budget, latency_percentile_sql, parse_budget
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
from abtest.errors import AbtestError
from abtest.experiment import Experiment
from abtest.log import EventLog
from abtest.metrics import MetricResult, default_metrics
from abtest.report import Report
from abtest.sessionize import Filters
from contracts.columns import Columns


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


class BudgetType(click.ParamType):
    """An absolute budget 'QUANTITY<=LIMIT' or 'QUANTITY>=LIMIT' (`abtest.budget.parse_budget`)."""

    name = "budget"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Budget:
        if isinstance(value, Budget):
            return value
        try:
            return parse_budget(str(value))
        except AbtestError as error:
            self.fail(str(error), param, ctx)


def budget_verdicts(
    log: EventLog, budgets: tuple[Budget, ...], result: Report, stat: StatChoice, filters: Filters
) -> list[tuple[bool, str]]:
    """(passed, one line) for each budget and treatment of `result`."""
    filtered = bool(filters.describe())
    names = tuple(dict.fromkeys(b.quantity for b in budgets if b.percentile is None))
    values: dict[tuple[str, int], float] = {}
    if names:
        metrics = default_metrics(names, estimand=stat.estimand, alpha=stat.alpha, relative=stat.relative)
        extra = Experiment(metrics, alpha=stat.alpha, relative=stat.relative, estimand=stat.estimand, correction="none").analyze(
            log, experiment=result.experiment, control=result.control, treatments=result.treatments, filters=filters
        )
        values = {(row.metric, row.treatment): float(row.result.treatment_mean) for row in extra.rows}
    out = []
    for treatment in result.treatments:
        label = result.arm_label(treatment)
        for budget in budgets:
            q = budget.percentile
            if q is not None:
                if filtered:
                    raise click.ClickException(f"budget {budget}: latency percentiles read every request of the arm; drop the session filters")
                sql, params = latency_percentile_sql(result.experiment, treatment, q, Columns.ERROR in log.columns)
                row = log.con.execute(sql, params).fetchone()
                value = None if row is None or row[0] is None else float(row[0])
            else:
                value = values.get((budget.quantity, treatment))
            unit = " ms" if "latency" in budget.quantity else ""
            if value is None:
                out.append((False, f"FAIL  budget {budget} ({label}): no value in the log"))
            elif budget.holds(value):
                out.append((True, f"ok    budget {budget} ({label}): {value:.6g}{unit}"))
            else:
                out.append((False, f"FAIL  budget {budget} ({label}): {value:.6g}{unit} breaks the budget"))
    return out


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
@click.option(
    "--budget",
    "budgets",
    type=BudgetType(),
    multiple=True,
    help="Absolute budget on each treatment's own value, e.g. 'p99_latency_ms<=5' or 'error_rate<=0.01' (repeatable).",
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
    budgets: tuple[Budget, ...],
    ignore_srm: bool,
    query: LogQuery,
    stat: StatChoice,
    strict: bool,
) -> None:
    """Exit 1 when a metric of a treatment is significantly worse than --max-drop allows.

    By default a metric fails when its whole interval lies beyond the allowed drop (a
    significant regression); with --non-inferiority it fails unless the interval lies within
    it. Latency counts as worse when it rises. A sample ratio mismatch fails the check too,
    unless --ignore-srm. Each --budget limits a treatment's own value (e.g. p99_latency_ms<=5,
    error_rate<=0.01): it fails when the value observed breaks it. Rows with a NULL key or a value outside its domain are dropped and
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
        budget_lines = budget_verdicts(log, budgets, result, stat, query.filters) if budgets else []
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
    for passed, line in budget_lines:
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
    budget_note = f" and {len(budgets)} budget(s)" if budgets else ""
    click.echo(f"check passed: {len(result.rows)} metric(s){budget_note} of experiment {result.experiment!r}")
