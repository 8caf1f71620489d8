"""Experiments in process and their truth: a replay under the assigned arm reproduces the log."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from contracts.assignment import assign
from contracts.truth import read_truth_sql, truth_path
from sim.run.__main__ import main as run_cli
from sim.run.timeline import RETURN_INDEX, SESSION_ID_DAY, return_session

RETURNS = "returns:\n  enabled: true\n  base_rate_per_day: 3.0\n  sensitivity: 0.5\n  reference: 2.0\n"


def _experiments(path: Path, *recommenders: str) -> Path:
    arms = "\n".join(f"      - {{recommender: {name}}}" for name in recommenders)
    path.write_text(f"experiments:\n  - name: exp\n    serving: true\n    treatments:\n{arms}\n")
    return path


def _run(tmp_path: Path, world: Path, experiments: Path, *extra: str) -> Path:
    config = tmp_path / "env.yml"
    config.write_text(f"world: {world}\n{RETURNS}")
    log = tmp_path / "exp.duckdb"
    args = ["--episodes", "80", "--days", "3", "--seed", "4", "--config", str(config), "--log", str(log), "--quiet",
            "experiment", "--experiments", str(experiments), "--pre-days", "1", *extra]
    result = CliRunner().invoke(run_cli, args)
    assert result.exit_code == 0, result.output
    assert "truth:" in result.output
    summary = re.search(r"(\d+) requests in (\d+) batches", result.output)
    with duckdb.connect(str(log), read_only=True) as connection:
        logged = connection.execute("SELECT count(*) FROM events WHERE message IN ('next', 'last')").fetchone()
    assert summary is not None and int(summary[1]) == logged[0] and int(summary[2]) > 0  # the summary counts what was served
    return log


def _logged_sessions(log: Path) -> dict[tuple[int, int], tuple[int, float]]:
    with duckdb.connect(str(log), read_only=True) as connection:
        rows = connection.execute(
            "SELECT user, session, count(*), sum(time) FROM events WHERE experiments['exp'] IS NOT NULL GROUP BY ALL"
        ).fetchall()
    return {(u, s): (n, t) for u, s, n, t in rows}


def _truth(log: Path) -> list[tuple[int, int, int, int, float]]:
    with duckdb.connect() as connection:
        return connection.execute(f"SELECT arm, user, session, tracks, time FROM {read_truth_sql(truth_path(log))}").fetchall()


def test_replay_under_the_assigned_arm_reproduces_the_log(small_world_dir: Path, tmp_path: Path) -> None:
    log = _run(tmp_path, small_world_dir, _experiments(tmp_path / "e.yml", "random", "sticky_artist"))
    logged = _logged_sessions(log)
    truth = _truth(log)
    assigned = {(u, s): (n, t) for arm, u, s, n, t in truth if assign("exp", u, 2) == arm}
    assert assigned.keys() == logged.keys()
    assert all(assigned[key][0] == logged[key][0] and assigned[key][1] == pytest.approx(logged[key][1], abs=1e-9) for key in logged)
    # Returning listeners are part of the trajectories, and the other arm's outcomes are not the log's.
    assert any(s % SESSION_ID_DAY >= RETURN_INDEX for _, s in logged)
    other = {(u, s): (n, t) for arm, u, s, n, t in truth if assign("exp", u, 2) != arm}
    users = {u for u, _ in logged}
    assert {u for u, _ in other} == users  # every listener has outcomes under both arms
    assert sum(n for n, _ in other.values()) != sum(n for n, _ in logged.values())
    with duckdb.connect(str(log), read_only=True) as connection:
        pre = connection.execute("SELECT count(*), max(ts) FROM events WHERE experiments['pre'] IS NOT NULL").fetchone()
    assert pre[0] > 0 and str(pre[1]) < "2026-01-02 06"  # the pre-period is day 1 (sessions may run past midnight)


def test_potential_outcomes_of_an_aa_pair_are_identical(small_world_dir: Path, tmp_path: Path) -> None:
    log = _run(tmp_path, small_world_dir, _experiments(tmp_path / "aa.yml", "sticky_artist", "sticky_artist"))
    truth = _truth(log)
    arms = [sorted(row[1:] for row in truth if row[0] == arm) for arm in (0, 1)]
    assert arms[0] and arms[0] == arms[1]


def test_a_returning_session_id_depends_on_its_listener_alone() -> None:
    first = return_session(11, 5, 2 * SESSION_ID_DAY + 7, 3.5 * 86_400)
    assert first == return_session(11, 5, 2 * SESSION_ID_DAY + 7, 3.2 * 86_400)
    assert first // SESSION_ID_DAY == 4 and first % SESSION_ID_DAY >= RETURN_INDEX
    assert first != return_session(11, 6, 2 * SESSION_ID_DAY + 7, 3.5 * 86_400)


def test_experiment_needs_a_log(small_world_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(run_cli, ["--world", str(small_world_dir), "experiment", "--experiments", str(_experiments(tmp_path / "e.yml", "random", "top_pop"))])
    assert result.exit_code != 0 and "--log is required" in result.output
