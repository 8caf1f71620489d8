"""CUPED against its textbook variance reduction, 1 - rho^2 (Deng et al. 2013)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abtest.cuped import cuped, linearise
from abtest.stats import ratio_variance


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_cuped_reduces_variance_by_rho_squared(rho: float) -> None:
    rng = np.random.default_rng(20130204)
    n = 40_000
    x = rng.normal(size=n)
    y = 5.0 + rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)
    arm = rng.integers(0, 2, size=n)
    fit = cuped(y, None, x, arm, control=0, treatment=1)
    # The sample correlation has standard error (1 - rho^2)/sqrt(n), so rho^2 has 2 rho times that.
    tolerance = 4 * 2 * rho * (1 - rho**2) / math.sqrt(n)
    assert fit.variance_reduction == pytest.approx(rho**2, abs=tolerance)
    assert fit.theta == pytest.approx(rho, abs=4 * math.sqrt(1 - rho**2) / math.sqrt(n))


def test_cuped_keeps_the_effect_and_covariates_without_value_adjust_nothing() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    x = rng.normal(size=n)
    arm = rng.integers(0, 2, size=n)
    y = 10.0 + 0.8 * x + 0.6 * rng.normal(size=n) + 0.5 * arm
    fit = cuped(y, None, x, arm, control=0, treatment=1)
    se = math.sqrt(fit.control.variance + fit.treatment.variance)
    assert fit.treatment.value - fit.control.value == pytest.approx(0.5, abs=4 * se)
    missing = cuped(y, None, np.full(n, np.nan), arm, control=0, treatment=1)
    assert missing.variance_reduction == 0.0 and missing.control.value == pytest.approx(y[arm == 0].mean())


def test_linearised_ratio_variance_is_the_delta_method() -> None:
    rng = np.random.default_rng(3)
    y = rng.poisson(3, size=5000) + 1.0
    x = y * rng.gamma(2.0, 1.0, size=5000)
    value, lin = linearise(x, y)
    delta = ratio_variance(x.mean(), y.mean(), x.var(ddof=1), y.var(ddof=1), np.cov(x, y)[0, 1])
    assert value == pytest.approx(x.sum() / y.sum()) and np.var(lin, ddof=1) == pytest.approx(delta, rel=1e-9)


def test_users_without_a_covariate_are_a_stratum_of_their_own() -> None:
    # A quarter of the users have no pre-period and listen 3 less on average: Y = 4 + 0.8 x + e
    # for the others, Y = 1 + e for them (e ~ N(0, 0.6^2), x ~ N(0, 1)).
    rng = np.random.default_rng(2013)
    n = 40_000
    new = rng.random(n) < 0.25
    x = rng.normal(size=n)
    y = np.where(new, 1.0, 4.0 + 0.8 * x) + 0.6 * rng.normal(size=n)
    arm = rng.integers(0, 2, size=n)
    fit = cuped(y, None, np.where(new, np.nan, x), arm, control=0, treatment=1)
    # Only e is left: the reduction is 1 - var(e) / var(Y), with var(Y) = 0.75 * 0.64 + 0.36 + 9 * 0.25 * 0.75.
    expected = 1 - 0.36 / (0.75 * 0.64 + 0.36 + 9 * 0.25 * 0.75)
    # Each arm's residual variance is estimated from ~n/2 normal residuals: relative se sqrt(2 / (n/2)).
    assert fit.variance_reduction == pytest.approx(expected, abs=4 * (1 - expected) * math.sqrt(4 / n) * 2)
    assert fit.theta == pytest.approx(0.8, abs=4 * 0.6 / math.sqrt(0.75 * n / 2))
    # Without the indicator the new users' 3-track gap would stay in the residual.
    assert fit.variance_reduction > 1 - (0.36 + 9 * 0.25 * 0.75) / (0.75 * 0.64 + 0.36 + 9 * 0.25 * 0.75) + 0.1


def test_an_extra_covariate_is_fitted_beside_the_pre_period() -> None:
    # Y = 0.6 x + 0.5 z + e with x, z, e independent N(0, 1): x alone explains 0.36 / 1.61, x and z 0.61 / 1.61.
    rng = np.random.default_rng(33)
    n = 40_000
    x, z = rng.normal(size=n), rng.normal(size=n)
    y = 0.6 * x + 0.5 * z + rng.normal(size=n)
    arm = rng.integers(0, 2, size=n)
    alone = cuped(y, None, x, arm, control=0, treatment=1)
    both = cuped(y, None, x, arm, control=0, treatment=1, extra=z)
    # The residual variance of each arm is estimated to a relative 1/sqrt(n/4) or so (two arms of n/2).
    assert alone.variance_reduction == pytest.approx(0.36 / 1.61, abs=4 * 2 / math.sqrt(n))
    assert both.variance_reduction == pytest.approx(0.61 / 1.61, abs=4 * 2 / math.sqrt(n))
    assert both.theta == pytest.approx(0.6, abs=4 / math.sqrt(n / 2))
