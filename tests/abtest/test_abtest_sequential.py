"""The asymptotic confidence sequence: valid at every look at once, where daily fixed-horizon looks are not."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from abtest.sequential import confidence_sequence, half_width_factor, mixing_rho2


def test_boundary_formula_at_known_points() -> None:
    # rho^2 = (-2 log a + log(-2 log a + 1)) / n_opt (Howard et al. 2021, eq. 3.10) at a = 0.05.
    log_a = -2 * math.log(0.05)
    assert mixing_rho2(100, 0.05) == pytest.approx((log_a + math.log(log_a + 1)) / 100)
    # At n = n_opt the factor is sqrt((x + 1) / x * 2 log(sqrt(x + 1) / a)) with x = n rho^2.
    x = log_a + math.log(log_a + 1)
    assert float(half_width_factor(100, 100, 0.05)) == pytest.approx(math.sqrt((x + 1) / x * 2 * math.log(math.sqrt(x + 1) / 0.05)))
    assert float(half_width_factor(100, 100, 0.05)) > stats.norm.ppf(0.975)


def test_sequence_holds_at_every_look_where_daily_intervals_do_not() -> None:
    rng = np.random.default_rng(2021)
    runs, looks, per_look, alpha = 2000, 20, 50, 0.05
    steps = rng.normal(size=(runs, looks * per_look)).cumsum(axis=1)[:, per_look - 1 :: per_look]
    n = per_look * np.arange(1, looks + 1)
    mean, se = steps / n, 1 / np.sqrt(n)
    lower, upper = confidence_sequence(mean, se, n, n[-1], alpha)
    sequence_fpr = np.mean(((lower > 0) | (upper < 0)).any(axis=1))
    naive_fpr = np.mean((np.abs(mean / se) > stats.norm.ppf(1 - alpha / 2)).any(axis=1))
    tolerance = 3 * math.sqrt(alpha * (1 - alpha) / runs)  # 3 binomial standard errors at the nominal rate
    assert sequence_fpr <= alpha + tolerance
    assert naive_fpr > alpha + tolerance


@pytest.mark.parametrize("bad", [dict(n_opt=0, alpha=0.05), dict(n_opt=10, alpha=1.5)])
def test_bad_parameters_are_named(bad: dict) -> None:
    with pytest.raises(ValueError, match="n_opt|alpha"):
        mixing_rho2(**bad)
