"""The `abtest` command through click's CliRunner: outputs, exit codes and messages, bad input."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner, Result

from abtest.calibration import run_aa
from abtest.cli import main
from abtest.experiment import user_values
from abtest.log import EventLog
from abtest.metrics import UserColumns, default_metrics
from contracts.columns import EXPERIMENTS_TABLE, Columns
from tests.abtest.conftest import event, within

REPORT_KEYS = {
    "metric", "control_mean", "treatment_mean", "effect", "lower", "upper",
    "p_value", "significant", "control_users", "treatment_users",
}


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_explains_every_command() -> None:
    result = run("--help")

    assert result.exit_code == 0
    for command in ("report", "check", "aa", "power"):
        assert command in result.output
        sub = run(command, "--help")
        assert sub.exit_code == 0 and "--log" in sub.output


def test_report_table_on_the_default_experiment(synthetic_log: Path) -> None:
    result = run("report", "--log", synthetic_log, "--treatment", "1")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "experiment 'exp': T1 (rec1) vs control C (rec0)"
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split()[:8] == ["metric", "effect", "upper", "lower", "control_mean", "treatment_mean", "significant", "p_value"]
    row = next(line for line in lines if line.startswith("mean_time_per_session "))
    assert row.split()[6] == "True"
    assert "sample ratio check: ok" in result.stdout


def test_report_json_is_a_list_with_the_contract_keys_in_percent(synthetic_log: Path) -> None:
    result = run("report", "--log", synthetic_log, "--treatment", "1", "--format", "json")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["metric"] for row in rows] == [
        "time", "sessions", "mean_time_per_session", "mean_tracks_per_session", "mean_request_latency",
    ]
    for row in rows:
        assert REPORT_KEYS <= set(row)
    time = rows[0]
    assert time["lower"] < 25.0 < time["upper"]  # T1 has +25% time, in % of the control mean
    assert time["effect"] == pytest.approx(100 * (time["treatment_mean"] / time["control_mean"] - 1))
    assert time["control_users"] + time["treatment_users"] < 1300


def test_report_csv_markdown_and_metric_choice(synthetic_log: Path) -> None:
    as_csv = run("report", "--log", synthetic_log, "--treatment", "2", "--metric", "sessions", "--format", "csv")
    as_md = run("report", "--log", synthetic_log, "--format", "markdown", "--metric", "time")

    assert as_csv.exit_code == 0 and as_md.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["metric"], r["treatment"]) for r in rows] == [("sessions", "2")]
    table = [line for line in as_md.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| metric | treatment | effect | upper | lower |")
    assert len(table) == 2 + 2  # header, alignment, T1 and T2


def test_report_html_has_the_table_and_both_plots(synthetic_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"

    result = run("report", "--log", synthetic_log, "--format", "html", "-o", out)

    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    assert "<h2>Effects</h2>" in page and "<h2>Sessions over time</h2>" in page
    assert "mean_tracks_per_session" in page


def test_report_filters_days_and_recommender(synthetic_log: Path) -> None:
    everything = json.loads(run("report", "--log", synthetic_log, "--treatment", "1", "--format", "json").stdout)
    first_day = json.loads(
        run("report", "--log", synthetic_log, "--treatment", "1", "--days", "1:2", "--format", "json").stdout
    )
    same_day = json.loads(
        run("report", "--log", synthetic_log, "--treatment", "1", "--days", "0:1", "--day-zero", "first",
            "--format", "json").stdout
    )
    before = run("report", "--log", synthetic_log, "--treatment", "1", "--days", "0:1")
    served = run("report", "--log", synthetic_log, "--treatment", "1", "--recommender", "rec0")

    assert first_day[1]["control_mean"] < everything[1]["control_mean"]  # fewer sessions per user in one day
    assert same_day == first_day  # the log starts on simulated day 1 (2026-01-01), the day after day zero
    assert before.exit_code == 1 and "after filters (days 0:1 (day 0 = 2025-12-31))" in before.output
    assert served.exit_code == 1 and "treatment arm (treatment 1)" in served.output and "no users" in served.output


def test_check_passes_an_improvement(synthetic_log: Path) -> None:
    result = run("check", "--log", synthetic_log, "--treatment", "1", "--metric", "mean_time_per_session", "--max-drop", "2%")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok    mean_time_per_session (T1 (rec1)): +")
    assert "check passed: 1 metric(s)" in result.stdout


def test_check_fails_a_regression_and_says_by_how_much(synthetic_log: Path) -> None:
    # Control 1 vs treatment 0: treatment 0 listens 20% less than treatment 1 (1 / 1.25).
    result = run("check", "--log", synthetic_log, "--control", "1", "--treatment", "0", "--metric", "time",
                 "--metric", "sessions", "--max-drop", "2%")

    assert result.exit_code == 1
    assert "FAIL  time (C (rec0)): -" in result.stdout
    assert "significantly worse than the allowed 2% drop, by at least" in result.output
    assert "ok    sessions" in result.stdout
    assert "Error: check failed for experiment 'exp': time (C (rec0))" in result.stderr


def test_check_non_inferiority_fails_when_the_drop_cannot_be_ruled_out(synthetic_log: Path) -> None:
    loose = run("check", "--log", synthetic_log, "--treatment", "2", "--metric", "time", "--max-drop", "1%")
    strict = run("check", "--log", synthetic_log, "--treatment", "2", "--metric", "time", "--max-drop", "1%",
                 "--non-inferiority")

    assert loose.exit_code == 0
    assert strict.exit_code == 1 and "cannot rule out a drop beyond the allowed 1% drop" in strict.output


@pytest.fixture(scope="module")
def srm_log(synthetic_log: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic log with a third of treatment 1's users lost."""
    path = tmp_path_factory.mktemp("srm") / "events.duckdb"
    shutil.copy(synthetic_log, path)
    with duckdb.connect(str(path)) as con:
        con.execute("DELETE FROM events WHERE experiments['exp'] = 1 AND \"user\" % 3 = 0")
    return path


def test_sample_ratio_mismatch_warns_loudly_and_fails_check(srm_log: Path) -> None:
    report = run("report", "--log", srm_log, "--format", "json")
    check = run("check", "--log", srm_log, "--treatment", "2")
    ignored = run("check", "--log", srm_log, "--treatment", "2", "--ignore-srm")

    assert report.exit_code == 0
    assert "WARNING: SAMPLE RATIO MISMATCH" in report.stderr
    assert json.loads(report.stdout)[0]["srm_p_value"] < 0.001
    assert check.exit_code == 1 and "sample ratio mismatch (chi-square p =" in check.stderr
    assert ignored.exit_code == 0 and "SAMPLE RATIO MISMATCH" in ignored.stderr


def test_aa_reports_false_positive_rate_coverage_and_power(synthetic_log: Path) -> None:
    result = run("aa", "--log", synthetic_log, "--runs", "200", "--inject", "20%", "--format", "json", "--strict")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {row["metric"] for row in rows} == {
        "time", "sessions", "mean_time_per_session", "mean_tracks_per_session", "mean_request_latency",
    }
    with EventLog.open(synthetic_log) as log:
        _, values = user_values(log, list(UserColumns.VALUES), experiment="exp")
    control = {name: array[values[UserColumns.ARM] == 0] for name, array in values.items()}
    library = run_aa(control[UserColumns.USER], control, default_metrics(), runs=200, inject=0.2, salt="exp")
    for row in rows:
        assert row["runs"] == 200 and row["inject"] == pytest.approx(0.2)
        assert row["fpr_lower"] <= 0.05 <= row["fpr_upper"]
        assert {key: row[key] for key in ("false_positive_rate", "coverage", "power")} == pytest.approx(
            {key: getattr(library[row["metric"]], key) for key in ("false_positive_rate", "coverage", "power")}
        )
    # +20% on the mean time of the control arm's ~400 users, split in two halves: the normal-
    # approximation power of Welch's test (treated half's spread scaled by 1.2; about 0.6), within
    # the binomial band of 200 runs.
    time = control[UserColumns.TIME]
    z = 0.2 * time.mean() / (time.std(ddof=1) * np.sqrt((1 + 1.2**2) / (len(time) / 2)))
    expected = scipy.stats.norm.cdf(z - scipy.stats.norm.ppf(0.975)) + scipy.stats.norm.cdf(-z - scipy.stats.norm.ppf(0.975))
    assert within(float(expected), next(row["power"] for row in rows if row["metric"] == "time"), 200)


def test_aa_strict_fails_a_miscalibrated_test(synthetic_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from abtest.calibration import AAResult

    aa_module = importlib.import_module("abtest.cli.aa")  # the package's `aa` attribute is the command

    def liberal(*args: object, **kwargs: object) -> dict[str, AAResult]:
        nan = float("nan")
        return {"time": AAResult(1000, 400, 0.09, 0.073, 0.109, 0.02, 0.3, nan, nan, nan, nan, nan, 90, 0, 0)}

    monkeypatch.setattr(aa_module, "run_aa", liberal)
    result = run("aa", "--log", synthetic_log, "--runs", "1000", "--metric", "time", "--strict")

    assert result.exit_code == 1
    assert "A/A calibration failed: time: false-positive rate 9.00% is not 5%" in result.output


def test_aa_strict_counts_coverage_over_every_run(synthetic_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Coverage is counted over every re-split, p-values only over runs that gave one: with 100
    p-values but 10,000 intervals, 92% coverage is far from 95%, though 92 of 100 would not be."""
    import importlib

    from abtest.calibration import AAResult

    aa_module = importlib.import_module("abtest.cli.aa")

    def undercovering(*args: object, **kwargs: object) -> dict[str, AAResult]:
        return {"time": AAResult(100, 400, 0.05, 0.01, 0.11, 0.05, 0.5, 0.05, 0.92, 0.91, 0.93, 0.9, 5, 9200, 10_000)}

    monkeypatch.setattr(aa_module, "run_aa", undercovering)
    result = run("aa", "--log", synthetic_log, "--runs", "100", "--metric", "time", "--inject", "5%", "--strict")

    assert result.exit_code == 1
    assert "time: coverage 92.00% is not 95%" in result.output


def test_aa_table_and_bad_arm(synthetic_log: Path) -> None:
    table = run("aa", "--log", synthetic_log, "--runs", "50", "--arm", "all", "--metric", "time")
    bad = run("aa", "--log", synthetic_log, "--arm", "control")
    empty = run("aa", "--log", synthetic_log, "--arm", "5")

    assert table.exit_code == 0 and "50 re-splits" in table.stdout and table.stdout.count("FPR") == 1
    assert bad.exit_code == 2 and "must be a treatment index or 'all'" in bad.output
    assert empty.exit_code == 1 and "treatment 5 of experiment 'exp' has no users" in empty.output
    unknown = run("aa", "--log", synthetic_log, "--experiment", "nope")
    assert unknown.exit_code == 1 and "unknown experiment 'nope'; the log has: exp" in unknown.output


def test_power_gives_mde_and_users_needed(synthetic_log: Path) -> None:
    result = run("power", "--log", synthetic_log, "--effect", "2%", "--format", "json", "--metric", "time")
    table = run("power", "--log", synthetic_log)

    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["mde"] > 2.0  # 400 users per arm cannot see 2%
    assert row["users_needed_control"] > row["control_users"]
    assert table.exit_code == 0 and "MDE" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "nope"], "unknown experiment 'nope'; the log has: exp"),
        (["--treatment", "7"], "treatment 7 is not in experiment 'exp': it has treatments 0..2"),
        (["--control", "1", "--treatment", "1"], "control == treatment == 1"),
        (["--days", "3:1"], "the first day must be before the last"),
        (["--alpha", "1.5"], "alpha == 1.5, must be a number with 0 < alpha < 1"),
    ],
)
def test_report_bad_arguments(synthetic_log: Path, args: list[str], message: str) -> None:
    result = run("report", "--log", synthetic_log, *args)

    assert result.exit_code in (1, 2)
    assert message in result.output


def test_empty_arm_is_named(make_log: Callable[..., Path]) -> None:
    path = make_log([event(u, 0, "last") for u in range(10)])  # users alternate between treatments 0 and 1
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE {EXPERIMENTS_TABLE} AS SELECT 'exp' AS experiment, range::INTEGER AS treatment, "
                    "'random' AS recommender, true AS serving, TIMESTAMP '2024-01-01' AS started FROM range(3)")

    result = run("report", "--log", path, "--treatment", "2")

    assert result.exit_code == 1
    assert "treatment arm (treatment 2) of experiment 'exp' has no users in the log" in result.output


def test_values_in_the_wrong_unit_are_dropped_and_named(make_log: Callable[..., Path]) -> None:
    path = make_log([event(u, 0, "last", latency=2e9) for u in range(10)])  # latency in the wrong unit

    result = run("report", "--log", path)

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "has no completed sessions" in result.output
    assert "data quality: 10 rows dropped (10 latency negative or above 60 s)" in result.output

@pytest.mark.parametrize("command", ["report", "check", "aa", "power"])
def test_every_command_rejects_a_log_with_missing_columns(make_log: Callable[..., Path], command: str) -> None:
    path = make_log([], drop=[Columns.EXPERIMENTS])

    result = run(command, "--log", path)

    assert result.exit_code == 1
    assert "lacks column(s) experiments" in result.output


def test_not_a_log(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database\n")

    result = run("report", "--log", text)
    missing = run("report", "--log", tmp_path / "missing.duckdb")

    assert result.exit_code == 1 and "neither a DuckDB database nor a Parquet file" in result.output
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_bad_percentages_and_dates(synthetic_log: Path) -> None:
    drop = run("check", "--log", synthetic_log, "--max-drop", "lots")
    negative = run("check", "--log", synthetic_log, "--max-drop", "-1%")
    date = run("report", "--log", synthetic_log, "--since", "yesterday")
    zero = run("report", "--log", synthetic_log, "--days", "1:2", "--day-zero", "monday")

    assert drop.exit_code == 2 and "'lots' is not a percentage" in drop.output
    assert negative.exit_code == 2 and "must be >= 0%" in negative.output
    assert date.exit_code == 2 and "--since" in date.output
    assert zero.exit_code == 2 and "'monday' is neither a date YYYY-MM-DD nor 'first'" in zero.output


def test_parquet_log_gives_the_same_report(synthetic_log: Path, tmp_path: Path) -> None:
    with duckdb.connect(str(synthetic_log), read_only=True) as con:
        con.execute(f"COPY events TO '{tmp_path}/events.parquet' (FORMAT parquet)")

    from_duckdb = run("report", "--log", synthetic_log, "--format", "json", "--treatment", "1")
    from_parquet = run("report", "--log", f"{tmp_path}/*.parquet", "--format", "json", "--treatment", "1")

    assert from_parquet.exit_code == 0, from_parquet.output
    assert from_parquet.stdout == from_duckdb.stdout


def test_report_does_not_depend_on_the_order_of_events(synthetic_log: Path, tmp_path: Path) -> None:
    shuffled = tmp_path / "shuffled.duckdb"
    with duckdb.connect(str(shuffled)) as con:
        con.execute(f"ATTACH '{synthetic_log}' AS src (READ_ONLY)")
        con.execute("CREATE TABLE events AS SELECT * FROM src.events ORDER BY hash(ts, \"user\", message) DESC")
        con.execute(f"CREATE TABLE {EXPERIMENTS_TABLE} AS SELECT * FROM src.{EXPERIMENTS_TABLE}")

    # Float sums change in their last bits with the order of their terms; the report must not.
    reports = [
        run("report", "--log", log, "--format", "json", "--treatment", "1", "--treatment", "2").stdout
        for log in (synthetic_log, shuffled, synthetic_log)
    ]

    assert json.loads(reports[0])[0]["p_value"] < 0.05
    assert reports[0] == reports[1] == reports[2]


def test_since_until_filters(synthetic_log: Path) -> None:
    start = dt.date(2026, 1, 1)
    result = run("report", "--log", synthetic_log, "--since", str(start), "--until", "2026-01-02", "--format", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[1]["control_mean"] < 4  # sessions per user within one day
