"""The true effect of an experiment, from its potential outcomes (the truth file beside the log).

The simulator can replay every listener of an experiment under every arm (`python -m sim.run ...
truth`); the rows (`contracts.columns.TruthColumns`) hold each listener's sessions under each
arm. Here they become per-user values (the same definitions as `metrics.users_sql`) and, per
metric, the value the metric would have if *every* listener got arm a: the true effect of a
treatment is that value under the treatment over the value under the control, minus one, the
estimand the report's relative effect estimates. Metrics the truth cannot know (latency, which
is the serving machine's) get None.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb
import numpy as np

from abtest.errors import AbtestError
from abtest.metrics import Aggregates, MetricBaseAggregated, UserColumns
from contracts.columns import TruthColumns, quote
from contracts.truth import read_truth_sql, truth_path

# The per-user columns the truth provides (`UserColumns` names).
TRUTH_VALUES = (
    UserColumns.TIME,
    UserColumns.SESSIONS,
    UserColumns.TRACKS,
    UserColumns.MEAN_TIME_PER_SESSION,
    UserColumns.MEAN_TRACKS_PER_SESSION,
)


def find_truth(log: str | Path) -> Path | None:
    """The truth file beside `log`, or None when there is none."""
    path = truth_path(log)
    return path if path.is_file() else None


def truth_experiments(path: str | Path) -> set[str]:
    """The names of the experiments the truth file holds sessions of.

    Raises:
        AbtestError: the file cannot be read.
    """
    try:
        with duckdb.connect() as connection:
            rows = connection.execute(f"SELECT DISTINCT {TruthColumns.EXPERIMENT} FROM {read_truth_sql(path)}").fetchall()
    except duckdb.Error as error:
        raise AbtestError(f"truth file {path} cannot be read: {str(error).splitlines()[0]}") from None
    return {str(row[0]) for row in rows}


def potential_outcomes(path: str | Path, experiment: str) -> dict[int, dict[str, np.ndarray]]:
    """Arm -> per-user columns (`user` and `TRUTH_VALUES`, users in id order) of `experiment` in the truth file.

    Raises:
        AbtestError: the file cannot be read, or holds nothing of `experiment`.
    """
    t, u = TruthColumns, UserColumns
    sql = f"""
        SELECT {t.ARM} AS arm, {quote(t.USER)} AS {quote(u.USER)},
               sum({quote(t.TIME)})::DOUBLE AS {quote(u.TIME)},
               count(*)::DOUBLE AS {u.SESSIONS},
               sum({t.TRACKS})::DOUBLE AS {u.TRACKS},
               sum({quote(t.TIME)}) / count(*) AS {u.MEAN_TIME_PER_SESSION},
               sum({t.TRACKS}) / count(*) AS {u.MEAN_TRACKS_PER_SESSION}
        FROM {read_truth_sql(path)} WHERE {t.EXPERIMENT} = ?
        GROUP BY ALL ORDER BY arm, {quote(u.USER)}"""
    try:
        with duckdb.connect() as connection:
            arrays = connection.execute(sql, [experiment]).fetchnumpy()
    except duckdb.Error as error:
        raise AbtestError(f"truth file {path} cannot be read: {str(error).splitlines()[0]}") from None
    arms = np.asarray(arrays["arm"])
    if len(arms) == 0:
        raise AbtestError(f"truth file {path} holds no sessions of experiment {experiment!r}; replay that experiment")
    out = {}
    for arm in np.unique(arms).tolist():
        chosen = arms == arm
        out[int(arm)] = {name: np.asarray(arrays[name])[chosen] for name in (u.USER, *TRUTH_VALUES)}
    return out


def arm_values(metric: MetricBaseAggregated, outcomes: Mapping[int, Mapping[str, np.ndarray]]) -> dict[int, float] | None:
    """The metric's value with every listener in arm a, for each arm; None when the truth lacks its columns."""
    wanted = tuple(dict.fromkeys(metric.aggr_cols.mean_cols + tuple(c for pair in metric.aggr_cols.cov_cols for c in pair)))
    if any(col not in TRUTH_VALUES for col in wanted):
        return None
    return {arm: float(metric.estimate(Aggregates.from_arrays(**{c: columns[c] for c in wanted})).value) for arm, columns in outcomes.items()}


def true_effect(metric: MetricBaseAggregated, outcomes: Mapping[int, Mapping[str, np.ndarray]], control: int, treatment: int) -> float | None:
    """The true relative effect of `treatment` against `control` (a fraction), or None when unknown."""
    values = arm_values(metric, outcomes)
    if values is None or control not in values or treatment not in values:
        return None
    return values[treatment] / values[control] - 1.0


def daily_cumulative_time(path: str | Path, experiment: str, arm: int, users: np.ndarray) -> np.ndarray:
    """Users x days: each listener's time listened under `arm` up to the end of each day of the
    experiment (days from the first replayed session's midnight), NaN before their first session.
    Rows follow `users`."""
    t = TruthColumns
    sql = f"""
        WITH rows AS (SELECT {quote(t.USER)} AS u, {quote(t.TIME)} AS v, {t.START} AS s
                      FROM {read_truth_sql(path)} WHERE {t.EXPERIMENT} = ? AND {t.ARM} = ?),
        origin AS (SELECT date_trunc('day', min(s)) AS o FROM rows)
        SELECT u, floor((epoch(s) - epoch((SELECT o FROM origin))) / 86400)::BIGINT AS day, sum(v)
        FROM rows GROUP BY ALL"""
    with duckdb.connect() as connection:
        rows = connection.execute(sql, [experiment, arm]).fetchnumpy()
    index = {int(user): i for i, user in enumerate(np.asarray(users).tolist())}
    days = int(np.max(rows["day"])) + 1 if len(rows["day"]) else 0
    per_day = np.zeros((len(index), days))
    first = np.full(len(index), days)
    for user, day, value in zip(rows["u"].tolist(), rows["day"].tolist(), np.asarray(rows["sum(v)"]).tolist(), strict=True):
        if user in index:
            per_day[index[user], day] += value
            first[index[user]] = min(first[index[user]], day)
    cumulative = np.cumsum(per_day, axis=1)
    cumulative[np.arange(days)[None, :] < first[:, None]] = np.nan
    return cumulative
