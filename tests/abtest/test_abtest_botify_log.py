"""`abtest` on a log written by the service's own event-log writer: views over Parquet segments, start records."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner

from abtest.cli import main
from contracts.assignment import assign
from contracts.eventlog import EventWriter, init_log
from contracts.eventlog.layout import LogLayout
from contracts.eventlog.writer import Row, record_start

DAY_ONE_US = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)  # sim.run's simulated day 1
MINUTE_US = 60_000_000
USERS = 60


def sessions_of(user: int) -> list[list[float]]:
    """Each user's sessions: lists of fractions listened, varying by user so that arms differ by chance only."""
    rng = np.random.default_rng(user)
    return [list(rng.uniform(0.1, 1.0, rng.integers(1, 6))) for _ in range(1 + user % 3)]


@pytest.fixture(scope="module")
def botify_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log as `botify serve` leaves it: experiment 'exp' (2 treatments, serving), course-style events (no session ids)."""
    path = tmp_path_factory.mktemp("botify") / "events.duckdb"
    layout = init_log(path)
    start = [
        {"experiment": "exp", "treatment": t, "recommender": name, "serving": True}
        for t, name in enumerate(["sticky_artist", "random"])
    ]
    record_start(layout, start, DAY_ONE_US)
    writer = EventWriter(LogLayout.of(path), ["exp"], flush_window=3600, flush_events=10**9)
    try:
        for user in range(USERS):
            ts = DAY_ONE_US + user * MINUTE_US
            for times in sessions_of(user):
                for i, time in enumerate(times):
                    last = i == len(times) - 1
                    row: Row = (ts, user, None, "last" if last else "next", i, time, None if last else i + 1,
                                "random", 0.002, (assign("exp", user, 2),), None, None, None, None)
                    writer.append(row)
                    ts += MINUTE_US
                ts += 120 * MINUTE_US
    finally:
        writer.close()
    return path


def test_report_on_the_services_log_matches_a_direct_computation(botify_log: Path) -> None:
    result = CliRunner().invoke(main, ["report", "--log", str(botify_log), "--format", "json", "--metric", "time",
                                       "--metric", "mean_time_per_session"])

    assert result.exit_code == 0, result.output
    rows = {row["metric"]: row for row in json.loads(result.stdout)}
    per_user: dict[str, list[list[float]]] = {"time": [[], []], "mean_time_per_session": [[], []]}
    for user in range(USERS):
        arm = assign("exp", user, 2)
        totals = [sum(times) for times in sessions_of(user)]
        per_user["time"][arm].append(sum(totals))
        per_user["mean_time_per_session"][arm].append(sum(totals) / len(totals))
    for metric, (control, treatment) in per_user.items():
        ref = scipy.stats.ttest_ind(treatment, control, equal_var=False)
        assert rows[metric]["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert rows[metric]["control_mean"] == pytest.approx(np.mean(control), rel=1e-9)
        assert (rows[metric]["control_users"], rows[metric]["treatment_users"]) == (len(control), len(treatment))


def test_days_and_declared_recommenders_follow_the_service(botify_log: Path) -> None:
    first_day = CliRunner().invoke(main, ["report", "--log", str(botify_log), "--days", "1:2"])
    day_zero = CliRunner().invoke(main, ["report", "--log", str(botify_log), "--days", "0:1"])

    assert first_day.exit_code == 0, first_day.output
    assert first_day.stdout.startswith("experiment 'exp': T1 (random) vs control C (sticky_artist)")
    assert day_zero.exit_code == 1 and "no completed sessions" in day_zero.output


@pytest.mark.parametrize("command", ["report", "check", "aa", "power"])
def test_missing_segments_are_a_clear_error(tmp_path: Path, command: str) -> None:
    path = tmp_path / "events.duckdb"
    init_log(path)
    (tmp_path / "events.segments").rename(tmp_path / "elsewhere")

    result = CliRunner().invoke(main, [command, "--log", str(path)])

    assert result.exit_code == 1
    assert f"cannot read log '{path}': IO Error: No files found" in result.output
    assert "Traceback" not in result.output and "LINE 1" not in result.output
