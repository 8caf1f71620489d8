"""A/B statistics over the Botify event log.

Submodules, one job each:

* `log`: open the event log (DuckDB or Parquet) read-only, check its columns, find experiments.
* `sessionize`: events to sessions, as DuckDB SQL (by session id, else closed by 'last').
* `metrics`: per-user metrics in SQL and tea-tasting-style metric classes over per-arm aggregates.
* `stats`: Welch's test, Fieller and delta-method relative intervals, Holm, SRM, power.
* `experiment`: `Experiment(...).analyze(log, ...)`: from a log to a `Report`.
* `report`: the `Report` object, rendering itself as table, Markdown, CSV, JSON or HTML.
* `html`: the HTML rendering with inline plots.
* `hashing`: vectorised MurmurHash3 for re-salting the assignment.
* `calibration`: A/A re-splits: false-positive rate, p-value uniformity, coverage, power.
* `synthetic`: synthetic event logs with known effects (tests, benchmarks, demos).
* `decisions`: logged decisions (a served track and its listen fraction) per session, from the log.
* `ope`: off-policy estimators (IPS, SNIPS, DM, DR, Switch-DR, per-decision IS) as numpy functions.
* `interleaving`: interleaving's per-listener preference and verdict.
* `config`: statistical defaults in one place.
* `cli`: the `abtest` command.
"""

from abtest.config import config_context, get_config, set_config
from abtest.errors import AbtestError
from abtest.experiment import Experiment
from abtest.log import EventLog
from abtest.metrics import Mean, RatioOfSums, default_metrics
from abtest.report import Report
from abtest.sessionize import Filters

__all__ = [
    "AbtestError",
    "EventLog",
    "Experiment",
    "Filters",
    "Mean",
    "RatioOfSums",
    "Report",
    "config_context",
    "default_metrics",
    "get_config",
    "set_config",
]
