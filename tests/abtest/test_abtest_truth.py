"""The true effect beside each estimate: `abtest report --truth` over a simulated experiment's replay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from abtest.cli import main as abtest_cli
from contracts.truth import read_truth_sql, truth_path
from sim.run.__main__ import main as run_cli


@pytest.fixture(scope="module")
def experiment_log(small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-day in-process experiment random vs sticky_artist with returns and a 1-day pre-period, with its truth."""
    root = tmp_path_factory.mktemp("truth")
    (root / "env.yml").write_text(f"world: {small_world_dir}\nreturns:\n  enabled: true\n  base_rate_per_day: 3.0\n  reference: 2.0\n")
    (root / "e.yml").write_text(
        "experiments:\n  - name: exp\n    serving: true\n    treatments:\n      - {recommender: random}\n      - {recommender: sticky_artist}\n"
    )
    log = root / "exp.duckdb"
    args = ["--episodes", "80", "--days", "3", "--seed", "2", "--config", str(root / "env.yml"), "--log", str(log), "--quiet",
            "experiment", "--experiments", str(root / "e.yml"), "--pre-days", "1"]
    result = CliRunner().invoke(run_cli, args)
    assert result.exit_code == 0, result.output
    return log


def test_report_shows_the_true_effect_found_beside_the_log(experiment_log: Path) -> None:
    result = CliRunner().invoke(abtest_cli, ["report", "--log", str(experiment_log), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["metric"]: row for row in json.loads(result.output)}
    with duckdb.connect() as connection:
        per_arm = dict(
            connection.execute(
                f"SELECT arm, avg(t) FROM (SELECT arm, user, sum(time) AS t FROM {read_truth_sql(truth_path(experiment_log))} GROUP BY ALL) GROUP BY arm"
            ).fetchall()
        )
    assert rows["time"]["truth"] == pytest.approx(100 * (per_arm[1] / per_arm[0] - 1), rel=1e-9)
    assert rows["time"]["covers_truth"] == (rows["time"]["lower"] <= rows["time"]["truth"] <= rows["time"]["upper"])
    assert rows["mean_request_latency"]["truth"] is None
    table = CliRunner().invoke(abtest_cli, ["report", "--log", str(experiment_log)])
    assert "covers_truth" in table.output and "potential outcomes" in table.output


def test_report_without_truth_and_with_a_missing_one(experiment_log: Path, tmp_path: Path) -> None:
    plain = CliRunner().invoke(abtest_cli, ["report", "--log", str(experiment_log), "--no-truth", "--format", "json"])
    assert plain.exit_code == 0 and "truth" not in json.loads(plain.output)[0]
    missing = CliRunner().invoke(abtest_cli, ["report", "--log", str(experiment_log), "--truth", str(tmp_path / "none.parquet")])
    assert missing.exit_code != 0 and "does not exist" in missing.output


def test_cuped_rows_keep_the_unadjusted_ones_and_say_their_reduction(experiment_log: Path) -> None:
    result = CliRunner().invoke(abtest_cli, ["report", "--log", str(experiment_log), "--adjust", "cuped", "--adjust", "cupac", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    plain = [r for r in rows if r["variance_reduction"] is None]
    adjusted = [r for r in rows if r["variance_reduction"] is not None]
    assert len(plain) == 5 and {r["method"].split("+")[0] for r in adjusted} == {"cuped", "cupac"}
    cuped = [r for r in adjusted if r["method"].startswith("cuped")]
    # CUPED needs the metric's own pre-period value, which latency (the serving machine's) has not.
    assert {r["metric"] for r in cuped} == {"time", "sessions", "mean_time_per_session", "mean_tracks_per_session"}
    assert all(r["variance_reduction"] < 100 and r["truth"] is not None for r in cuped)
    table = CliRunner().invoke(abtest_cli, ["report", "--log", str(experiment_log), "--adjust", "cuped"])
    assert "variance reduction" in table.output


def test_cuped_needs_a_pre_period(small_world_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "local.duckdb"
    run = CliRunner().invoke(run_cli, ["--episodes", "40", "--world", str(small_world_dir), "--recommender", "local:random", "--log", str(log), "--quiet"])
    assert run.exit_code == 0, run.output
    result = CliRunner().invoke(abtest_cli, ["report", "--log", str(log), "--experiment", "local", "--control", "0", "--adjust", "cuped"])
    assert result.exit_code != 0


def test_validate_reports_every_method_against_the_truth(experiment_log: Path) -> None:
    runs = 40
    result = CliRunner().invoke(abtest_cli, ["validate", "--log", str(experiment_log), "--runs", str(runs), "--metric", "time", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    checks = {row["method"]: row for row in rows if "method" in row}
    assert set(checks) == {"welch", "cuped", "cupac", "sequential"}
    assert all(check["runs"] == runs and 0 <= check["coverage"] <= 1 for check in checks.values())
    assert checks["sequential"]["width"] > checks["welch"]["width"]
    assert checks["cuped"]["variance_reduction"] > 0
    peeking = rows[-1]
    assert peeking["looks"] == 2 and peeking["sequential"] <= peeking["naive"] and peeking["obf"] <= peeking["naive"]


def test_validate_can_redraw_the_listeners_and_names_the_design(experiment_log: Path) -> None:
    args = ["validate", "--log", str(experiment_log), "--runs", "20", "--metric", "time", "--method", "welch", "--no-peeking"]
    finite, redrawn = (CliRunner().invoke(abtest_cli, [*args, "--design", design]) for design in ("finite", "superpopulation"))
    assert finite.exit_code == 0 and redrawn.exit_code == 0, finite.output + redrawn.output
    assert "re-drawn with replacement and re-randomised 20 times" in redrawn.output
    assert "re-drawn" not in finite.output
    as_json = CliRunner().invoke(abtest_cli, [*args, "--design", "superpopulation", "--format", "json"])
    (row,) = json.loads(as_json.output)
    assert row["expected_coverage"] is None  # Neyman's prediction is for fixed listeners only
    bad = CliRunner().invoke(abtest_cli, [*args, "--design", "bootstrap"])
    assert bad.exit_code == 2 and "'bootstrap' is not one of 'finite', 'superpopulation'" in bad.output


def test_html_report_has_the_truth_and_the_cuped_rows(experiment_log: Path) -> None:
    as_json = CliRunner().invoke(abtest_cli, ["report", "--log", str(experiment_log), "--adjust", "cuped", "--format", "json"])
    page = CliRunner().invoke(abtest_cli, ["report", "--log", str(experiment_log), "--adjust", "cuped", "--format", "html"])
    assert page.exit_code == 0, page.output
    rows = json.loads(as_json.output)
    time_truth = next(r["truth"] for r in rows if r["metric"] == "time" and r["variance_reduction"] is None)
    cuped_time = next(r for r in rows if r["metric"] == "time" and r["variance_reduction"] is not None)
    assert "<th>truth</th>" in page.output and "<th>covers_truth</th>" in page.output
    assert "Variance reduction with pre-period covariates" in page.output
    assert f"<td>{time_truth:+.3f}%</td>" in page.output
    assert f"<td>{cuped_time['variance_reduction']:.1f}%</td>" in page.output


def test_exposure_is_a_pre_treatment_covariate(experiment_log: Path) -> None:
    # CUPED's exposure counts from a listener's first session in the experiment: that start must
    # be the same whichever arm the listener gets, and the log's must be the truth's.
    with duckdb.connect() as connection:
        firsts = connection.execute(
            f"""SELECT "user", count(DISTINCT first), any_value(first) FROM (
                    SELECT arm, "user", min(start) AS first FROM {read_truth_sql(truth_path(experiment_log))} GROUP BY ALL
                ) GROUP BY ALL"""
        ).fetchall()
    assert firsts and all(n == 1 for _, n, _ in firsts)
    with duckdb.connect(str(experiment_log), read_only=True) as connection:
        logged = dict(connection.execute(
            "SELECT \"user\", min(ts) FROM events WHERE map_contains(experiments, 'exp') GROUP BY ALL"
        ).fetchall())
    assert {user: first for user, _, first in firsts} == logged


def test_a_truth_beside_the_log_of_another_experiment_is_left_out_with_a_line(experiment_log: Path, small_world_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "e.yml").write_text(
        "experiments:\n  - name: other\n    serving: true\n    treatments:\n      - {recommender: random}\n      - {recommender: top_pop}\n"
    )
    log = tmp_path / "other.duckdb"
    args = ["--episodes", "40", "--world", str(small_world_dir), "--seed", "3", "--log", str(log), "--quiet", "experiment", "--experiments", str(tmp_path / "e.yml")]
    run = CliRunner().invoke(run_cli, args)
    assert run.exit_code == 0, run.output
    shutil.copy(truth_path(experiment_log), truth_path(log))  # holds experiment 'exp' only
    found = CliRunner().invoke(abtest_cli, ["report", "--log", str(log), "--format", "json"])
    assert found.exit_code == 0, found.output
    assert "truth" not in json.loads(found.stdout)[0]
    assert "holds no sessions of experiment 'other': reported without the truth" in found.stderr
    asked = CliRunner().invoke(abtest_cli, ["report", "--log", str(log), "--truth", str(truth_path(log))])
    assert asked.exit_code != 0 and "holds no sessions of experiment 'other'" in asked.output
