"""The `abtest` command: A/B reports, CI gates, A/A calibration and power from the event log.

Subcommands live in their own modules and are attached to the root group here.
"""

from __future__ import annotations

import logging

import click

from abtest.cli.aa import aa
from abtest.cli.check import check
from abtest.cli.monitor import monitor_command
from abtest.cli.power import power
from abtest.cli.report import report
from abtest.cli.validate import validate_command
from abtest.dashboard.server import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress and the SQL plan chosen.")
def main(verbose: bool) -> None:
    """A/B statistics over the Botify event log (DuckDB or Parquet).

    \b
    abtest report --control 0 --treatment 2          the A/B table (also markdown/csv/json/html)
    abtest check --treatment 2 --max-drop 2%          exit 1 when a metric got significantly worse
    abtest aa --runs 1000 --inject 5%                 false-positive rate, p-value uniformity, coverage
    abtest power --effect 2%                          minimum detectable effect, users needed
    abtest serve --log LOG                            the live dashboard in a browser (loopback)
    abtest validate --runs 1000                       methods against the truth (python -m sim.run ... truth)
    abtest monitor --method obf                       day by day: when could the experiment have stopped
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


main.add_command(report)
main.add_command(check)
main.add_command(aa)
main.add_command(power)
main.add_command(serve)
main.add_command(validate_command)
main.add_command(monitor_command)
