"""The Report object: its dicts, frame and renderings, and the warnings it carries."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from abtest import Experiment, config_context
from abtest.errors import AbtestError
from abtest.log import EventLog
from abtest.metrics import MetricResult
from abtest.report import Report, ReportRow
from abtest.stats import srm
from tests.abtest.conftest import event


def small_report(lower: float = -0.05, upper: float = 0.15, significant: bool = False) -> Report:
    result = MetricResult(
        control_mean=2.0, treatment_mean=2.2, effect=0.1, lower=lower, upper=upper, p_value=0.2,
        significant=significant, diff=0.2, diff_lower=-0.1, diff_upper=0.5, statistic=1.3, df=97.0,
        control_users=50, treatment_users=52, method="fieller",
    )
    return Report(
        source="log.duckdb", experiment="exp", control=0, treatments=(1,), recommenders={1: "dssm"},
        alpha=0.05, relative="fieller", estimand="user-mean", correction="holm",
        rows=[ReportRow("mean_time_per_session", 1, result, 0.2, False)],
        users={0: 50, 1: 52}, srm=srm([50, 52]),
    )


def test_dicts_are_in_percent_of_the_control_mean() -> None:
    (row,) = small_report().to_dicts()

    assert row["effect"] == pytest.approx(10.0)
    assert (row["lower"], row["upper"]) == pytest.approx((-5.0, 15.0))
    assert row["treatment"] == 1 and row["control_users"] == 50


def test_json_writes_infinite_bounds_as_null() -> None:
    (row,) = json.loads(small_report(lower=-math.inf, upper=math.inf).to_string("json"))

    assert row["lower"] is None and row["upper"] is None


def test_table_shows_arms_with_recommenders_and_the_srm_line() -> None:
    text = small_report().to_string("table")

    assert text.startswith("experiment 'exp': T1 (dssm) vs control C\n")
    assert "sample ratio check: ok" in text
    assert "+10.000%" in text and "+15.000%" in text and "-5.000%" in text


def test_frame_has_one_row_per_metric_and_treatment() -> None:
    frame = small_report().to_frame()

    assert list(frame["metric"]) == ["mean_time_per_session"]
    assert frame.loc[0, "effect"] == pytest.approx(10.0)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(AbtestError, match="format == 'xml'"):
        small_report().to_string("xml")


def test_users_in_two_treatments_are_reported(make_log: Callable[..., Path]) -> None:
    rows = [event(u, 0, "last", experiments={"exp": u % 2}) for u in range(8)]
    rows.append(event(3, 60, "last", experiments={"exp": 0}))  # user 3 was in treatment 1 before

    with EventLog.open(make_log(rows)) as log:
        report = Experiment().analyze(log, control=0, treatments=[1])

    assert any("1 user(s) appear in more than one treatment" in w for w in report.warnings)
    assert report.users == {0: 5, 1: 3}


def test_config_context_changes_the_default_alpha(synthetic_log: Path) -> None:
    with EventLog.open(synthetic_log) as log, config_context(alpha=0.01):
        report = Experiment().analyze(log, control=0, treatments=[1])

    assert report.alpha == 0.01
    assert "99% intervals" in report.to_string()
    assert all(row.result.significant == (row.result.p_value < 0.01) for row in report.rows)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(AbtestError, match="alpha == 2, must be a number with 0 < alpha < 1"), config_context(alpha=2):
        pass
    with pytest.raises(AbtestError, match="relative == 'bootstrap', must be one of fieller, delta"):
        Experiment(relative="bootstrap")


@pytest.mark.parametrize(
    ("effect", "higher_is_better", "significant", "verdict"),
    [(0.5, True, True, "improvement"), (-0.5, True, True, "regression"), (7.0, False, True, "regression"),
     (-0.2, False, True, "improvement"), (7.0, False, False, "")],
)
def test_a_significant_move_the_wrong_way_is_a_regression(effect: float, higher_is_better: bool, significant: bool, verdict: str) -> None:
    result = MetricResult(1.0, 1.0 + effect, effect, effect - 0.1, effect + 0.1, 0.001, significant, effect, effect - 0.1,
                          effect + 0.1, 5.0, 100.0, 50, 50, "fieller")
    row = ReportRow("mean_request_latency", 1, result, 0.001 if significant else 0.5, significant, higher_is_better)
    assert row.verdict == verdict
