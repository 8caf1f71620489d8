"""A/A calibration on per-user values: false-positive rate, p-value uniformity, coverage of an injected effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from abtest.calibration import run_aa
from abtest.errors import AbtestError
from abtest.experiment import user_values
from abtest.log import EventLog
from abtest.metrics import Mean, RatioOfSums, UserColumns, default_metrics
from tests.abtest.conftest import within

U = UserColumns


@pytest.fixture(scope="module")
def users() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(12)
    n = 3000
    sessions = rng.poisson(4, n) + 1.0
    time = rng.gamma(2.0 * sessions, 1.5)
    return np.arange(10_000, 10_000 + n), {U.TIME: time, U.SESSIONS: sessions}


# Re-splits per calibration test. The assertions use the exact binomial band of conftest.within
# (a correct procedure fails it with probability 1e-4): with 5,000 runs that band is 3.84-6.24%
# around a 5% false-positive rate and 93.76-96.16% around 95% coverage, so a procedure off by
# 2 percentage points either way fails with probability at least 0.98 (docs/testing.md).
RUNS = 5000


@pytest.mark.parametrize("relative", ["fieller", "delta"])
def test_false_positive_rate_and_coverage_are_nominal(users: tuple, relative: str) -> None:
    """One call gives both: the re-splits without effect (false-positive rate, uniform p-values)
    and with a known +5% (coverage of the relative interval, power)."""
    ids, values = users
    metrics = {"time": Mean(U.TIME), "mtps": RatioOfSums(U.TIME, U.SESSIONS)}

    results = run_aa(ids, values, metrics, runs=RUNS, inject=0.05, alpha=0.05, relative=relative, seed=1)

    for result in results.values():
        assert result.runs == RUNS and result.users == 3000 and result.coverage_runs == RUNS
        assert within(0.05, result.false_positive_rate, RUNS)
        assert result.fpr_lower < result.false_positive_rate < result.fpr_upper
        assert result.ks_p_value > 1e-4
        assert result.inject == 0.05
        assert within(0.95, result.coverage, RUNS)
        assert result.coverage_lower < result.coverage < result.coverage_upper
    # Power of a two-sided Welch test of +5% on the mean per-user time, 1,500 users per arm, the
    # treated arm's spread scaled by 1.05 as its values are (normal approximation, df ~ 1,500),
    # against the share of significant re-splits: the same binomial band.
    time = values[U.TIME]
    z = 0.05 * time.mean() / (time.std(ddof=1) * np.sqrt((1 + 1.05**2) / 1500))
    expected = scipy.stats.norm.cdf(z - scipy.stats.norm.ppf(0.975)) + scipy.stats.norm.cdf(-z - scipy.stats.norm.ppf(0.975))
    assert within(float(expected), results["time"].power, RUNS)


def test_without_inject_there_is_no_coverage(users: tuple) -> None:
    ids, values = users

    result = run_aa(ids, values, {"time": Mean(U.TIME)}, runs=50)["time"]

    assert np.isnan(result.coverage) and np.isnan(result.power) and np.isnan(result.inject)
    assert result.coverage_runs == 0 and result.covered == 0


def test_same_seed_same_result_and_another_seed_differs(users: tuple) -> None:
    ids, values = users
    metrics = {"time": Mean(U.TIME)}

    first = run_aa(ids, values, metrics, runs=50, seed=3)
    again = run_aa(ids, values, metrics, runs=50, seed=3)
    other = run_aa(ids, values, metrics, runs=50, seed=4)

    assert first["time"].false_positive_rate == again["time"].false_positive_rate
    assert first["time"].ks_statistic == again["time"].ks_statistic
    assert first["time"].ks_statistic != other["time"].ks_statistic


def test_calibration_on_a_logged_control_arm(synthetic_log: Path) -> None:
    metrics = default_metrics()
    with EventLog.open(synthetic_log) as log:
        _, values = user_values(log, list(U.VALUES))
    keep = values[U.ARM] == 0

    results = run_aa(values[U.USER][keep], {k: v[keep] for k, v in values.items()}, metrics, runs=RUNS)

    assert set(results) == set(metrics)
    assert all(within(0.05, r.false_positive_rate, RUNS) for r in results.values())


def test_bad_arguments(users: tuple) -> None:
    ids, values = users
    with pytest.raises(AbtestError, match="runs == 0"):
        run_aa(ids, values, {"t": Mean(U.TIME)}, runs=0)
    with pytest.raises(AbtestError, match="at least 4"):
        run_aa(ids[:3], values, {"t": Mean(U.TIME)})
    with pytest.raises(AbtestError, match="needs per-user column 'tracks'"):
        run_aa(ids, values, {"t": Mean(U.TRACKS)})


def test_calibration_renders_itself_and_names_its_problems() -> None:
    from abtest.calibration import AAResult, Calibration

    nan = float("nan")
    inflated = AAResult(1000, 500, 0.12, 0.10, 0.14, 0.1, 1e-9, nan, nan, nan, nan, nan, 120, 0, 0)
    calibration = Calibration("exp", "treatment 0", 0.05, None, {"time": inflated})
    assert calibration.to_dicts()[0]["metric"] == "time" and calibration.to_dicts()[0]["inject"] is None
    assert "FPR 12.00%" in calibration.to_string() and '"false_positives": 120' in calibration.to_string("json")
    problems = calibration.problems(0.001)
    assert len(problems) == 2 and "false-positive rate 12.00%" in problems[0] and "not uniform" in problems[1]
