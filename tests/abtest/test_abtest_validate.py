"""`abtest.validate` on synthetic potential outcomes with a known effect: coverage at the nominal rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abtest.errors import AbtestError
from abtest.metrics import Mean, UserColumns
from abtest.validate import peeking_check, validate
from tests.abtest.conftest import binomial_band


def _outcomes(n: int, effect: float, seed: int) -> tuple[dict[int, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pre = rng.gamma(4.0, 2.5, size=n)
    base = 0.7 * pre + rng.gamma(2.0, 2.0, size=n)
    users = np.arange(n)
    outcomes = {0: {UserColumns.USER: users, UserColumns.TIME: base}, 1: {UserColumns.USER: users, UserColumns.TIME: base * (1 + effect)}}
    pre_columns = {name: np.full(n, np.nan) for name in (UserColumns.SESSIONS, UserColumns.TRACKS, UserColumns.MEAN_TIME_PER_SESSION, UserColumns.MEAN_TRACKS_PER_SESSION)}
    pre_columns[UserColumns.TIME] = pre
    pre_columns[UserColumns.SESSIONS] = np.ones(n)
    return outcomes, pre_columns


def test_coverage_of_a_known_effect_is_nominal_and_cuped_reduces_variance() -> None:
    runs, alpha = 600, 0.05
    outcomes, pre = _outcomes(2000, 0.03, seed=11)
    result = validate(outcomes, pre, {"time": Mean(UserColumns.TIME)}, control=0, treatment=1, runs=runs, seed=5,
                      alpha=alpha, relative="fieller", methods=("welch", "cuped"))
    checks = {c.method: c for c in result.checks}
    assert checks["welch"].truth == pytest.approx(0.03)
    # A constant multiplicative effect: Neyman's variance is exact, so coverage is nominal within
    # the binomial spread of `runs` runs (3.5 standard errors: two methods checked).
    tolerance = 3.5 * math.sqrt(alpha * (1 - alpha) / runs)
    for check in checks.values():
        assert check.coverage == pytest.approx(1 - alpha, abs=tolerance)
        assert abs(check.bias) < 4 * check.width / (2 * 1.96) / math.sqrt(runs) + 1e-4
    assert checks["cuped"].variance_reduction > 0.3 and checks["cuped"].width < checks["welch"].width


def test_an_aa_pair_of_one_arm_has_false_positives_at_alpha() -> None:
    runs, alpha = 400, 0.05
    outcomes, pre = _outcomes(2000, 0.0, seed=12)
    result = validate(outcomes, pre, {"time": Mean(UserColumns.TIME)}, control=0, treatment=0, runs=runs, seed=6,
                      alpha=alpha, relative="fieller", methods=("welch",))
    check = result.checks[0]
    assert check.truth == 0.0
    # Power is the false-positive rate here: alpha within 3 binomial standard errors.
    assert check.power == pytest.approx(alpha, abs=3 * math.sqrt(alpha * (1 - alpha) / runs))


def test_daily_peeking_inflates_the_naive_rate_and_not_the_sequential_ones() -> None:
    rng = np.random.default_rng(14)
    users, days, runs = 1000, 14, 1000
    arrival = rng.integers(0, days, size=users)  # listeners keep arriving
    daily = np.cumsum(rng.gamma(1.0, 3.0, size=(users, days)) * (np.arange(days)[None, :] >= arrival[:, None]), axis=1)
    daily[np.arange(days)[None, :] < arrival[:, None]] = np.nan

    result = peeking_check(daily, runs=runs, seed=3, alpha=0.05)

    lower, upper = binomial_band(0.05, runs)
    assert result.naive > upper  # fourteen fixed-horizon looks
    assert lower <= result.once <= upper  # one look at the end
    assert result.obf <= upper and result.sequential <= upper


def test_heterogeneous_effects_make_welch_conservative_as_neyman_predicts() -> None:
    # Individual effects that vary a lot and against the baseline: the Neyman variance counts
    # their spread, which the randomisation does not, so coverage exceeds 95% by a predictable amount.
    rng = np.random.default_rng(1923)
    n, runs = 2000, 1000
    base = rng.gamma(3.0, 2.0, size=n)
    treated = 10.0 + rng.normal(0, 0.5, size=n)  # every listener ends near 10, whatever their baseline
    users = np.arange(n)
    outcomes = {0: {UserColumns.USER: users, UserColumns.TIME: base}, 1: {UserColumns.USER: users, UserColumns.TIME: treated}}
    result = validate(outcomes, None, {"time": Mean(UserColumns.TIME)}, control=0, treatment=1, runs=runs, seed=2,
                      alpha=0.05, relative="delta", methods=("welch",))
    check = result.checks[0]
    assert check.expected_coverage is not None and check.expected_coverage > 0.99
    lower, upper = binomial_band(check.expected_coverage, runs)
    assert lower <= check.coverage <= upper


def test_listeners_redrawn_from_their_population_give_welch_its_nominal_coverage() -> None:
    """Over 20 seeds (listeners and coins both seeded 0-19), 1,000 runs each: superpopulation
    coverage 94.0-96.7%, inside the band 92.1-97.5%; finite coverage 98.9-99.9%, always above it."""
    # The same heterogeneous listeners as above, but each run re-draws them with replacement
    # before the coin (the superpopulation design): the spread of individual effects now varies
    # the estimate as Welch's variance assumes, so coverage is 95%, not Neyman's excess.
    rng = np.random.default_rng(1923)
    n, runs = 2000, 1000
    base = rng.gamma(3.0, 2.0, size=n)
    treated = 10.0 + rng.normal(0, 0.5, size=n)
    users = np.arange(n)
    outcomes = {0: {UserColumns.USER: users, UserColumns.TIME: base}, 1: {UserColumns.USER: users, UserColumns.TIME: treated}}
    finite, redrawn = (
        validate(outcomes, None, {"time": Mean(UserColumns.TIME)}, control=0, treatment=1, runs=runs, seed=2,
                 alpha=0.05, relative="delta", methods=("welch",), design=design).checks[0]
        for design in ("finite", "superpopulation")
    )
    assert redrawn.truth == finite.truth == pytest.approx(treated.mean() / base.mean() - 1)
    lower, upper = binomial_band(0.95, runs)
    assert lower <= redrawn.coverage <= upper
    assert finite.coverage > upper  # the fixed listeners' excess, which re-drawing removes
    assert redrawn.expected_coverage is None


def test_an_unknown_design_is_named() -> None:
    outcomes, _ = _outcomes(10, 0.0, seed=1)
    with pytest.raises(AbtestError, match="design == 'bootstrap', must be one of finite, superpopulation"):
        validate(outcomes, None, {"time": Mean(UserColumns.TIME)}, control=0, treatment=1, runs=1, seed=0,
                 alpha=0.05, relative="delta", design="bootstrap")
