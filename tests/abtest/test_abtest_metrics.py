"""Per-user metrics and per-arm aggregates in DuckDB, and the whole analysis against direct scipy computations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from abtest import Experiment, default_metrics, stats
from abtest.errors import AbtestError
from abtest.experiment import arm_data, user_values
from abtest.log import EventLog
from abtest.metrics import (
    DAY,
    REPORT_METRICS,
    AggrCols,
    Aggregates,
    Mean,
    RatioOfSums,
    UserColumns,
    add_aggregates,
    aggregates_sql,
    running_users_sql,
    users_sql,
)
from abtest.sessionize import Filters, Query, Strategy, sessions_sql
from abtest.synthetic import SyntheticExperiment, write_synthetic_log
from tests.abtest.conftest import T0, binomial_band, event

U = UserColumns
RTOL = 1e-9


def per_user(path: Path) -> pd.DataFrame:
    with EventLog.open(path) as log:
        _, values = user_values(log, list(U.VALUES))
    return pd.DataFrame(values)


def test_user_values_follow_the_course_definitions(make_log: Callable[..., Path]) -> None:
    rows = [
        event(1, 0, time=0.5, latency=0.001),
        event(1, 3, "last", time=1.0, latency=0.003),  # session 1: 2 tracks, time 1.5, latency 2 ms
        event(1, 60, "last", time=0.25, latency=0.005),  # session 2: 1 track, time 0.25, latency 5 ms
    ]
    frame = per_user(make_log(rows))

    row = frame.iloc[0]
    assert row[U.TIME] == pytest.approx(1.75)
    assert row[U.SESSIONS] == 2
    assert row[U.TRACKS] == 3
    assert row[U.MEAN_TIME_PER_SESSION] == pytest.approx(0.875)
    assert row[U.MEAN_TRACKS_PER_SESSION] == pytest.approx(1.5)
    assert row[U.MEAN_REQUEST_LATENCY] == pytest.approx(3.5)  # mean of the sessions' means, in ms
    assert row[U.LATENCY_TOTAL] == pytest.approx(9.0)


def test_duckdb_aggregates_equal_numpy_on_the_same_users(synthetic_log: Path) -> None:
    cols = AggrCols(mean_cols=(U.TIME, U.SESSIONS), cov_cols=((U.TIME, U.SESSIONS),))
    frame = per_user(synthetic_log)

    with EventLog.open(synthetic_log) as log:
        data, _ = arm_data(log, cols)

    for arm, part in frame.groupby(U.ARM):
        expected = Aggregates.from_arrays(time=part[U.TIME].to_numpy(), sessions=part[U.SESSIONS].to_numpy())
        got = data.aggregates[arm]
        assert got.count == expected.count
        for col in (U.TIME, U.SESSIONS):
            assert got.mean(col) == pytest.approx(expected.mean(col), rel=RTOL)
            assert got.var(col) == pytest.approx(expected.var(col), rel=RTOL)
        assert got.cov(U.TIME, U.SESSIONS) == pytest.approx(expected.cov(U.TIME, U.SESSIONS), rel=RTOL)



def test_aggregates_leave_out_missing_values_as_avg_would(make_log: Callable[..., Path]) -> None:
    def user(uid: int, tracks: int, latency: float | None) -> list[dict]:
        return [
            event(uid, i, "last" if i == tracks - 1 else "next", latency=latency, experiments={"exp": 0})
            for i in range(tracks)
        ]

    log = make_log(user(1, 2, 0.002) + user(2, 2, None) + user(3, 3, 0.004))
    cols = AggrCols(mean_cols=(U.MEAN_REQUEST_LATENCY,), cov_cols=((U.LATENCY_TOTAL, U.TRACKS),))

    with EventLog.open(log) as opened:
        got = arm_data(opened, cols)[0].aggregates[0]

    assert got.count == 3  # user 2 is in the arm, without a latency
    assert got.mean(U.MEAN_REQUEST_LATENCY) == pytest.approx(3.0)  # users 1 and 3: 2 ms and 4 ms
    assert got.var(U.MEAN_REQUEST_LATENCY) == pytest.approx(2.0)
    assert got.cov(U.LATENCY_TOTAL, U.TRACKS) == pytest.approx(np.cov([4.0, 12.0], [2, 3])[0, 1])  # 4.0

def test_running_user_values_equal_the_user_values_of_each_days_sessions(make_log: Callable[..., Path]) -> None:
    day = 24 * 60  # minutes
    rows = [
        event(1, 10, time=0.5, latency=0.001), event(1, 13, "last", time=0.25),  # day 0
        event(1, 2 * day + 5, "last", time=0.75, latency=0.004),  # day 2, nothing on day 1
        event(2, day + 30, "last", time=0.125, latency=None),  # arrives on day 1, no latency
        event(3, 40, "last", experiments={"exp": 1}),  # day 0 in T1 ...
        event(3, day + 40, "last", time=0.5, experiments={"exp": 0}),  # ... day 1 in C: mixed from day 1
        event(4, 2 * day + 50, time=0.3), event(4, 2 * day + 52, "last", latency=0.007),  # day 2 only
    ]
    sessions = sessions_sql("exp", Strategy.LAST_LIST)
    start = f"TIMESTAMP '{T0:%Y-%m-%d}'"

    with EventLog.open(make_log(rows)) as log:
        running = running_users_sql(sessions, f"start::DATE - {start}::DATE")
        got = log.con.execute(f"SELECT * FROM ({running.sql}) ORDER BY \"user\", {DAY}", running.params).fetchall()
        expected = {}
        for d in range(3):
            cut = Query(f"SELECT * FROM ({sessions.sql}) WHERE start < {start} + INTERVAL {d + 1} DAY", sessions.params)
            users = users_sql(cut)
            expected[d] = log.con.execute(f"SELECT * FROM ({users.sql}) ORDER BY \"user\"", users.params).fetchall()

    # A row per user and day with sessions, holding until the user's next such day.
    assert [r[:3] for r in got] == [(0, 2, 1), (2, None, 1), (1, None, 2), (0, 1, 3), (1, None, 3), (2, None, 4)]
    for d in range(3):
        holding = [r[2:] for r in got if r[0] <= d and (r[1] is None or d < r[1])]
        assert holding == expected[d]  # the same values, to the last bit, NULL latency and the mixed user included


def test_added_aggregates_of_disjoint_users_equal_the_aggregates_of_all(synthetic_log: Path) -> None:
    cols = AggrCols(mean_cols=(U.TIME, U.MEAN_REQUEST_LATENCY), cov_cols=((U.TIME, U.SESSIONS),))
    with EventLog.open(synthetic_log) as log:
        users = users_sql(sessions_sql("exp", Strategy.SESSION_ID))
        whole = aggregates_sql(users, cols)
        parts = aggregates_sql(Query(f"SELECT *, \"user\" % 3 AS part FROM ({users.sql})", users.params), cols, by=("part",))
        expected = log.con.execute(whole.sql, whole.params).fetchall()
        got = add_aggregates([row[1:] for row in log.con.execute(parts.sql, parts.params).fetchall()])

    assert got == expected  # exact sums: equal, not close


def test_report_agrees_with_scipy_welch_on_per_user_values(synthetic_log: Path) -> None:
    frame = per_user(synthetic_log)
    with EventLog.open(synthetic_log) as log:
        report = Experiment().analyze(log, control=0, treatments=[1])

    c, t = frame[frame[U.ARM] == 0], frame[frame[U.ARM] == 1]
    for row in report.rows:
        ref = scipy.stats.ttest_ind(t[row.metric], c[row.metric], equal_var=False)
        ci = ref.confidence_interval(1 - report.alpha)
        r = row.result
        assert r.p_value == pytest.approx(ref.pvalue, rel=RTOL)
        assert (r.diff_lower, r.diff_upper) == pytest.approx((ci.low, ci.high), rel=RTOL)
        assert r.control_mean == pytest.approx(c[row.metric].mean(), rel=RTOL)
        assert r.effect == pytest.approx(t[row.metric].mean() / c[row.metric].mean() - 1, rel=RTOL)


def test_known_effects_are_found(synthetic_log: Path) -> None:
    """T1 listens 25% more per track (time and time per session +25%, nothing else); T2 is an A/A arm."""
    with EventLog.open(synthetic_log) as log:
        report = Experiment().analyze(log, control=0)
    by = {(row.metric, row.treatment): row.result for row in report.rows}

    for metric in ("time", "mean_time_per_session"):
        assert by[metric, 1].significant
        assert by[metric, 1].lower < 0.25 < by[metric, 1].upper
    for metric in ("sessions", "mean_tracks_per_session"):
        assert by[metric, 1].lower < 0.0 < by[metric, 1].upper
    assert not any(by[m, 2].significant for m in REPORT_METRICS)


def test_ratio_of_sums_estimand(synthetic_log: Path) -> None:
    frame = per_user(synthetic_log)
    with EventLog.open(synthetic_log) as log:
        report = Experiment(estimand="ratio-of-sums", relative="delta").analyze(log, control=0, treatments=[1])
    by = {row.metric: row.result for row in report.rows}

    c = frame[frame[U.ARM] == 0]
    assert by["mean_time_per_session"].control_mean == pytest.approx(c[U.TIME].sum() / c[U.SESSIONS].sum(), rel=RTOL)
    assert by["mean_request_latency"].control_mean == pytest.approx(c[U.LATENCY_TOTAL].sum() / c[U.TRACKS].sum(), rel=RTOL)
    assert by["time"].method == "delta"
    assert by["mean_time_per_session"].lower < 0.25 < by["mean_time_per_session"].upper


@pytest.mark.slow
def test_intervals_from_the_log_are_the_calibrated_intervals(tmp_path: Path) -> None:
    """40 independent experiments in one log, each with a true +6% on time per session.

    Coverage is calibrated where it is cheap to count over thousands of runs: on per-user arrays
    (test_abtest_stats, test_abtest_calibration: 5,000 runs each, enough to see a 2-point
    miscalibration). Here the log's path (sessions and aggregates in SQL) must give exactly the
    interval that the calibrated statistics give on the same users' values, so the calibration
    carries over; the 40 coverages are only a coarse sanity check (binomial band: 31..40 of 40).
    """
    runs = 40
    experiments = [SyntheticExperiment(f"e{k}", (0.0, 0.06)) for k in range(runs)]
    path = write_synthetic_log(tmp_path / "many.duckdb", 20_000, experiments, seed=5, declare=False)
    metric = {"mean_time_per_session": Mean(U.MEAN_TIME_PER_SESSION)}

    covered = []
    with EventLog.open(path) as log:
        for x in experiments:
            r = Experiment(metric).analyze(log, experiment=x.name, control=0).rows[0].result
            _, values = user_values(log, [U.MEAN_TIME_PER_SESSION], experiment=x.name)
            arms = [values[U.MEAN_TIME_PER_SESSION][values[U.ARM] == arm] for arm in (0, 1)]
            est = [stats.Estimate(v.mean(), v.var(ddof=1) / len(v), len(v) - 1.0) for v in arms]
            expected = stats.compare(est[0], est[1], alpha=0.05)
            assert (r.lower, r.upper, r.p_value) == pytest.approx((float(expected.lower), float(expected.upper), float(expected.p_value)), rel=1e-6)  # SQL sums in another order
            covered.append(r.lower <= 0.06 <= r.upper)

    lower, upper = binomial_band(0.95, runs)
    assert lower <= np.mean(covered) <= upper


def test_metric_errors() -> None:
    with pytest.raises(AbtestError, match="unknown metric"):
        default_metrics(["time", "clicks"])
    with pytest.raises(AbtestError, match="unknown per-user column"):
        aggregates_sql(Query("SELECT 1", []), Mean("clicks").aggr_cols)
    one = {0: Aggregates.from_arrays(time=np.array([1.0])), 1: Aggregates.from_arrays(time=np.array([1.0, 2.0]))}
    with pytest.raises(AbtestError, match="control arm .* has 1 user"):
        Mean(U.TIME).analyze_aggregates(one, control=0, treatment=1)
    with pytest.raises(AbtestError, match="treatment arm .* has no users"):
        Mean(U.TIME).analyze_aggregates(one, control=1, treatment=3)


def test_aggr_cols_union_drops_duplicates() -> None:
    union = RatioOfSums(U.TIME, U.SESSIONS).aggr_cols | Mean(U.TIME).aggr_cols | RatioOfSums(U.TIME, U.SESSIONS).aggr_cols

    assert union == AggrCols((U.TIME, U.SESSIONS), ((U.SESSIONS, U.TIME),))


def test_empty_filters_give_a_clear_error(synthetic_log: Path) -> None:
    import datetime as dt

    with EventLog.open(synthetic_log) as log, pytest.raises(AbtestError, match=r"no completed sessions .* \(since 2030-01-01"):
        Experiment().analyze(log, filters=Filters(since=dt.datetime(2030, 1, 1)))
