"""Data quality: rows with a NULL key or a value outside its domain are dropped, counted and reported."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from abtest import EventLog, Experiment
from abtest.cli import main
from abtest.sessionize import Problem
from tests.abtest.conftest import event, write_events

# Rows that break one rule each (the first problem found counts), with the problem they count under.
BAD_ROWS: list[tuple[dict[str, Any], str]] = [
    ({"user": None}, Problem.USER),
    ({"user": None}, Problem.USER),
    ({"user": None, "time": 5.0}, Problem.USER),  # two problems: counted once, under the first
    ({"ts": None}, Problem.TS),
    ({"message": None}, Problem.MESSAGE),
    ({"message": "skip"}, Problem.MESSAGE),
    ({"experiments": None}, Problem.EXPERIMENTS),
    ({"experiments": {"exp": None}}, Problem.TREATMENT),
    ({"experiments": {"other": 0, "exp": -1}}, Problem.TREATMENT),
    ({"time": 4204.81}, Problem.TIME),
    ({"time": math.nan}, Problem.TIME),
    ({"latency": -0.5}, Problem.LATENCY),
    ({"latency": 1e6}, Problem.LATENCY),
]
EXPECTED = {Problem.USER: 3, Problem.TS: 1, Problem.MESSAGE: 2, Problem.EXPERIMENTS: 1, Problem.TREATMENT: 2, Problem.TIME: 2, Problem.LATENCY: 2}


def good_rows() -> list[dict[str, Any]]:
    """Ten users, two sessions each (next, next, last), arm = user % 2; times differ by user."""
    rows = []
    for user in range(10):
        for session in range(2):
            minute = 100 * user + 10 * session
            time = 0.2 + 0.07 * user
            rows += [
                # another experiment's index out of range does not make the row bad for this one
                event(user, minute, session=session, time=time, experiments={"exp": user % 2, "broken": -7}),
                event(user, minute + 1, session=session, time=time),
                event(user, minute + 2, "last", session=session, time=time),
            ]
    return rows


def bad_rows() -> list[dict[str, Any]]:
    """`BAD_ROWS` as events of user 1's first session (they would change its means if kept)."""
    rows = []
    for fields, _ in BAD_ROWS:
        row = event(1, 0.5, session=0)
        row.update(fields)
        rows.append(row)
    other = event(3, 0.5, session=0, experiments={"other": 0})
    other["user"] = None  # not the experiment's row: neither read nor counted
    return [*rows, other]


@pytest.fixture
def dirty_log(tmp_path: Path) -> Path:
    return write_events(tmp_path / "dirty.duckdb", good_rows() + bad_rows())


@pytest.fixture
def clean_log(tmp_path: Path) -> Path:
    return write_events(tmp_path / "clean.duckdb", good_rows())


def test_expected_counts_follow_the_table() -> None:
    counts: dict[str, int] = {}
    for _, problem in BAD_ROWS:
        counts[problem] = counts.get(problem, 0) + 1
    assert counts == EXPECTED


def test_bad_rows_are_dropped_and_counted_by_problem(dirty_log: Path, clean_log: Path) -> None:
    with EventLog.open(dirty_log) as log:
        dirty = Experiment().analyze(log, experiment="exp", control=0, treatments=[1])
    with EventLog.open(clean_log) as log:
        clean = Experiment().analyze(log, experiment="exp", control=0, treatments=[1])

    assert dirty.quality is not None and clean.quality is not None
    assert dirty.quality.dropped == EXPECTED
    assert dirty.quality.total_dropped == len(BAD_ROWS)
    assert clean.quality.dropped == {}
    # Dropping the bad rows gives exactly the analysis of the clean log: no NULL user, no +420,481%.
    assert dirty.users == clean.users == {0: 5, 1: 5}
    assert dirty.to_dicts() != clean.to_dicts()  # the data-quality fields differ ...
    strip = ("dropped_rows", "data_quality")
    assert [{k: v for k, v in row.items() if k not in strip} for row in dirty.to_dicts()] == [
        {k: v for k, v in row.items() if k not in strip} for row in clean.to_dicts()
    ]  # ... and nothing else


def test_every_report_format_has_the_data_quality_line(dirty_log: Path) -> None:
    runner = CliRunner()
    line = "data quality: 13 rows dropped (3 user is NULL; 1 ts is NULL; 2 message is NULL or not 'next'/'last';"
    for fmt in ("table", "markdown", "html"):
        result = runner.invoke(main, ["report", "--log", str(dirty_log), "--experiment", "exp", "--format", fmt])
        assert result.exit_code == 0, result.output
        assert (html.escape(line) if fmt == "html" else line) in result.output, fmt
    result = runner.invoke(main, ["report", "--log", str(dirty_log), "--experiment", "exp", "--format", "json"])
    rows = json.loads(result.stdout)
    assert {"metric", "control_mean", "treatment_mean", "effect", "lower", "upper", "p_value", "significant",
            "control_users", "treatment_users"} <= set(rows[0])
    assert all(row["dropped_rows"] == 13 and row["data_quality"].startswith(line) for row in rows)
    result = runner.invoke(main, ["report", "--log", str(dirty_log), "--experiment", "exp", "--format", "csv"])
    assert "dropped_rows" in result.stdout.splitlines()[0] and line in result.stdout


def test_strict_fails_on_any_dropped_row(dirty_log: Path, clean_log: Path) -> None:
    runner = CliRunner()
    for command in (["report"], ["check", "--max-drop", "100%"]):
        failed = runner.invoke(main, [*command, "--log", str(dirty_log), "--experiment", "exp", "--strict"])
        assert failed.exit_code == 1, failed.output
        assert failed.output.startswith("Error: --strict: experiment 'exp'") and "13 rows dropped" in failed.output
        assert len(failed.output.strip().splitlines()) == 1 and "Traceback" not in failed.output
        passed = runner.invoke(main, [*command, "--log", str(clean_log), "--experiment", "exp", "--strict"])
        assert passed.exit_code == 0, passed.output
        assert "data quality: no rows dropped" in passed.output
