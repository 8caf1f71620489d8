"""Absolute budgets in `abtest check`: parsing, the values compared, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner, Result

from abtest.budget import Budget, parse_budget
from abtest.cli import main
from abtest.errors import AbtestError
from contracts.columns import Columns


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p99_latency_ms<=5", Budget("p99_latency_ms", "<=", 5.0)),
        (" error_rate <= 1% ", Budget("error_rate", "<=", 0.01)),
        ("mean_request_latency<=2.5ms", Budget("mean_request_latency", "<=", 2.5)),
        ("mean_time_per_session>=3", Budget("mean_time_per_session", ">=", 3.0)),
        ("p99.9_latency_ms<=20", Budget("p99.9_latency_ms", "<=", 20.0)),
    ],
)
def test_budgets_parse(text: str, expected: Budget) -> None:
    assert parse_budget(text) == expected


def test_holds_respects_the_direction() -> None:
    assert parse_budget("error_rate<=0.01").holds(0.01) and not parse_budget("error_rate<=0.01").holds(0.0101)
    assert parse_budget("time>=3").holds(3.0) and not parse_budget("time>=3").holds(2.99)
    assert parse_budget("p95_latency_ms<=5").percentile == 95.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99_latency_ms=5", "is not QUANTITY<=LIMIT"),
        ("p99_latency_ms<5", "is not QUANTITY<=LIMIT"),
        ("p99_latency<=5", "unknown quantity 'p99_latency'"),
        ("p0_latency_ms<=5", "percentile 0 must be in (0, 100)"),
        ("p99_latency_ms<=5%", "in ms, not %"),
        ("time<=3ms", "only latencies are in ms"),
        ("error_rate<=1.2.3", "is not a number"),
    ],
)
def test_malformed_budgets_are_named(text: str, message: str) -> None:
    with pytest.raises(AbtestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_budget(text)


def test_percentile_budget_reads_the_arms_request_latencies(synthetic_log: Path) -> None:
    with duckdb.connect(str(synthetic_log), read_only=True) as con:
        latency = con.execute(
            f"SELECT {Columns.LATENCY} * 1000 FROM events WHERE {Columns.EXPERIMENTS}['exp'] = 2 AND {Columns.MESSAGE} <> 'last'"
        ).fetchnumpy()
    p99 = float(np.percentile(next(iter(latency.values())), 99))  # linear interpolation, as quantile_cont

    below = run("check", "--log", synthetic_log, "--treatment", "2", "--metric", "time", "--max-drop", "50%",
                "--budget", f"p99_latency_ms<={p99 * 1.001}")
    above = run("check", "--log", synthetic_log, "--treatment", "2", "--metric", "time", "--max-drop", "50%",
                "--budget", f"p99_latency_ms<={p99 * 0.999}")

    assert below.exit_code == 0, below.output
    assert f"ok    budget p99_latency_ms<={p99 * 1.001:g} (T2" in below.output
    assert above.exit_code == 1
    assert f"{p99:.6g} ms breaks the budget" in above.output


def test_metric_budget_uses_the_treatments_value_not_the_relative_effect(synthetic_log: Path) -> None:
    report = run("report", "--log", synthetic_log, "--treatment", "1", "--metric", "time", "--format", "json")
    value = float(json.loads(report.output)[0]["treatment_mean"])

    passed = run("check", "--log", synthetic_log, "--treatment", "1", "--metric", "time", "--budget", f"time>={value * 0.999}")
    failed = run("check", "--log", synthetic_log, "--treatment", "1", "--metric", "time", "--budget", f"time>={value * 1.001}")

    assert passed.exit_code == 0, passed.output
    assert "1 budget(s)" in passed.output
    assert failed.exit_code == 1
    assert "check failed" in failed.output and "breaks the budget" in failed.output


def test_percentile_budget_refuses_session_filters(synthetic_log: Path) -> None:
    result = run("check", "--log", synthetic_log, "--days", "1:2", "--budget", "p99_latency_ms<=5")

    assert result.exit_code == 1
    assert "drop the session filters" in result.output
    assert "Traceback" not in result.output
