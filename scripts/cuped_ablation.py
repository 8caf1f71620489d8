"""Which covariates make CUPED's variance reduction: an ablation over re-randomisations of the truth.

For a simulated experiment with its truth file (`python -m sim.run ... experiment --pre-days N`),
re-randomises the listeners `--runs` times (each given its stored outcome under the drawn arm)
and reports, per metric, the mean variance reduction of CUPED with: the pre-period value alone
(listeners without one mean-imputed), with the no-pre-period indicator, with the indicator and
the exposure (what `abtest report --adjust cuped` fits), and the exposure alone.

    python scripts/cuped_ablation.py --log data/weeks.duckdb --runs 20
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from abtest.cuped import EXPOSURE, align_pre, cuped, pre_period_sql
from abtest.errors import AbtestError
from abtest.log import EventLog
from abtest.metrics import UserColumns
from abtest.truth import find_truth, potential_outcomes

VARIANTS = ("pre-period value alone", "+ indicator", "+ indicator + exposure", "exposure alone")


@click.command()
@click.option("--log", "log_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--experiment", default=None, help="Experiment name (default: the serving one).")
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def main(log_path: Path, experiment: str | None, runs: int, seed: int) -> None:
    """Mean variance reduction of CUPED's covariate sets over re-randomisations of the truth."""
    truth = find_truth(log_path)
    if truth is None:
        raise click.ClickException(f"no truth file beside {log_path}; write one with `python -m sim.run ... truth`")
    try:
        with EventLog.open(log_path) as log:
            name = log.resolve_experiment(experiment).name
            outcomes = potential_outcomes(truth, name)
            users = outcomes[min(outcomes)][UserColumns.USER]
            sql, params = pre_period_sql(name)
            pre = align_pre(users, log.con.execute(sql, params).fetchnumpy())
    except AbtestError as error:
        raise click.ClickException(str(error)) from None
    control, treatment = sorted(outcomes)[:2]
    rng = np.random.default_rng(seed)
    click.echo(f"experiment {name!r}: {len(users)} listeners, {np.mean(~np.isfinite(pre[UserColumns.TIME])):.1%} without a pre-period, {runs} runs")
    for metric in (UserColumns.TIME, UserColumns.SESSIONS, UserColumns.MEAN_TIME_PER_SESSION):
        sums = dict.fromkeys(VARIANTS, 0.0)
        x = pre[metric]
        imputed = np.where(np.isfinite(x), x, np.nanmean(x))
        for _ in range(runs):
            coin = rng.random(len(users)) < 0.5
            y = np.where(coin, outcomes[treatment][metric], outcomes[control][metric])
            arm = coin.astype(np.int64)
            fits = (
                cuped(y, None, imputed, arm, control=0, treatment=1),
                cuped(y, None, x, arm, control=0, treatment=1),
                cuped(y, None, x, arm, control=0, treatment=1, extra=pre[EXPOSURE]),
                cuped(y, None, pre[EXPOSURE], arm, control=0, treatment=1),
            )
            for variant, fit in zip(VARIANTS, fits, strict=True):
                sums[variant] += fit.variance_reduction / runs
        click.echo(f"{metric}: " + ", ".join(f"{variant} {100 * value:.1f}%" for variant, value in sums.items()))


if __name__ == "__main__":
    main()
