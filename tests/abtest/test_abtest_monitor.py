"""`abtest monitor`: daily cumulative looks against group-sequential boundaries or the confidence sequence."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from scipy import stats

from abtest.cli import main
from abtest.experiment import Experiment
from abtest.groupseq import spending_boundaries
from abtest.log import EventLog
from abtest.metrics import default_metrics
from abtest.monitor import monitor
from abtest.sequential import half_width_factor
from abtest.sessionize import Filters


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_each_look_is_the_report_of_the_sessions_started_by_then(synthetic_log: Path) -> None:
    metric = default_metrics(("time",), relative="delta")["time"]
    with EventLog.open(synthetic_log) as log:
        result = monitor(log, "time", metric, experiment=None, control=0, treatment=1, method="obf", alpha=0.05, day_zero=None)
        second = result.looks[1]
        report = Experiment({"time": metric}, correction="none").analyze(log, control=0, treatments=[1], filters=Filters(until=second.until))
    row = report.rows[0].result
    assert second.effect == pytest.approx(row.effect, rel=1e-12)
    assert second.users == row.control_users + row.treatment_users
    # The delta-method z is the report's statistic under --relative delta.
    assert second.z == pytest.approx(row.statistic, rel=1e-9)
    assert [look.until - look.until.replace(hour=0) for look in result.looks] == [dt.timedelta(0)] * len(result.looks)


def test_boundaries_are_the_spending_boundaries_of_the_planned_looks(synthetic_log: Path) -> None:
    metric = default_metrics(("time",))["time"]
    with EventLog.open(synthetic_log) as log:
        obf = monitor(log, "time", metric, experiment=None, control=0, treatment=1, method="obf", alpha=0.05, day_zero=None, planned_days=10)
        cs = monitor(log, "time", metric, experiment=None, control=0, treatment=1, method="confidence-sequence", alpha=0.05, day_zero=None)
    expected = spending_boundaries(np.arange(1.0, 11.0), 0.05, "obf")[: len(obf.looks)]
    assert [look.boundary for look in obf.looks] == pytest.approx(expected.tolist(), rel=1e-9)
    for look in obf.looks:
        assert look.stop == (abs(look.z) >= look.boundary)
        assert look.stop == (not look.lower <= 0 <= look.upper)
    n = np.array([look.users for look in cs.looks])
    assert [look.boundary for look in cs.looks] == pytest.approx(half_width_factor(n, n[-1], 0.05).tolist(), rel=1e-9)
    # T1 listens 25% more: the planned end stops it; the stop day is the first look that crosses.
    assert obf.looks[-1].stop
    assert obf.stop_day == next(look.day for look in obf.looks if abs(look.z) >= look.boundary)


def test_information_fractions_are_measured_when_the_log_is_the_whole_experiment(synthetic_log: Path) -> None:
    metric = default_metrics(("time",))["time"]
    with EventLog.open(synthetic_log) as log:
        result = monitor(log, "time", metric, experiment=None, control=0, treatment=1, method="obf", alpha=0.05, day_zero=None)
        report = Experiment({"time": metric}, correction="none").analyze(log, control=0, treatments=[1])
    info = np.array([look.information for look in result.looks])
    row = report.rows[0].result
    # The last look's information is n^2 times the variance of the difference of means (Welch's se^2).
    se = (row.diff_upper - row.diff_lower) / (2 * stats.t.ppf(0.975, row.df))
    assert info[-1] == pytest.approx(result.looks[-1].users ** 2 * se**2, rel=1e-9)
    assert result.information == "variance" and np.all(np.diff(info) > 0)
    assert [look.boundary for look in result.looks] == pytest.approx(spending_boundaries(info, 0.05, "obf").tolist(), rel=1e-9)


def test_cli_json_and_table_agree(synthetic_log: Path) -> None:
    as_json = run("monitor", "--log", synthetic_log, "--treatment", "1", "--method", "pocock", "--format", "json", "--day-zero", "first")
    table = run("monitor", "--log", synthetic_log, "--treatment", "1", "--method", "pocock", "--day-zero", "first")

    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["method"] == "pocock" and data["planned_days"] == len(data["looks"])
    assert data["stop_day"] == next(look["day"] for look in data["looks"] if look["stop"])
    assert table.exit_code == 0
    assert f"could have stopped on day {data['stop_day']}" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--days", "1:3"), "drop the session filters"),
        (("--planned-days", "1"), "planned_days == 1, but experiment 'exp' already ran"),
        (("--treatment", "0"), "control == treatment == 0"),
        (("--treatment", "7"), "treatment 7 is not in experiment 'exp'"),
        (("--alpha", "1.5"), "alpha"),
    ],
)
def test_bad_input_gets_one_line(synthetic_log: Path, args: tuple[str, ...], message: str) -> None:
    result = run("monitor", "--log", synthetic_log, *args)

    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
