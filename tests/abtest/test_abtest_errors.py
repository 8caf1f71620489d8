"""Error rate: failures the service logged (`error` column) become report rows; older logs still read."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from abtest.cli import main
from contracts.columns import Columns
from tests.abtest.conftest import event

USERS = 200
NEXTS = 5  # 'next' requests per session, then one 'last'


def sessions(errors_in_treatment: float, seed: int = 0) -> tuple[list[dict], int, int]:
    """One session per user (arm = user % 2); in arm 1 each request fails with the given probability."""
    rng = np.random.default_rng(seed)
    rows, failed, asked = [], 0, 0
    for user in range(USERS):
        for step in range(NEXTS):
            error = "exception" if user % 2 == 1 and rng.random() < errors_in_treatment else None
            failed += error is not None
            asked += user % 2 == 1
            rows.append(event(user, step, session=user + 1, error=error))
        rows.append(event(user, NEXTS, "last", session=user + 1))
    return rows, failed, asked


def report(path: Path) -> dict[str, dict]:
    result = CliRunner().invoke(main, ["report", "--log", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    return {row["metric"]: row for row in json.loads(result.stdout)}


def test_logged_failures_give_an_error_rate_row_lower_is_better(make_log: Callable[..., Path]) -> None:
    rows, failed, asked = sessions(0.2)

    found = report(make_log(rows))

    error_rate = found["error_rate"]
    assert error_rate["control_mean"] == 0.0
    assert error_rate["treatment_mean"] == pytest.approx(failed / asked)
    assert error_rate["significant"] is True
    assert found["slow_rate"]["treatment_mean"] == 0.0


def test_a_log_without_errors_has_no_error_rows(make_log: Callable[..., Path]) -> None:
    rows, _, _ = sessions(0.0)

    assert "error_rate" not in report(make_log(rows))


def test_a_log_of_the_previous_format_without_the_error_columns_reads(make_log: Callable[..., Path]) -> None:
    rows, _, _ = sessions(0.2)

    found = report(make_log(rows, drop=[Columns.ERROR, Columns.ERROR_MESSAGE]))

    assert "error_rate" not in found and found["mean_time_per_session"]["control_users"] == USERS // 2
