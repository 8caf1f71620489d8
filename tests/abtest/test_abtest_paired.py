"""Paired comparisons: the paired t-test as scipy computes it, the relative interval's coverage, the verdict."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from abtest.errors import AbtestError
from abtest.paired import PairedResult, paired, regressed, unpaired


def test_difference_and_p_value_are_scipys_paired_t_test() -> None:
    rng = np.random.default_rng(1)
    control = rng.gamma(2.0, 1.5, 300)
    treatment = control * 1.03 + rng.normal(0, 0.5, 300)
    result = paired(control, treatment, alpha=0.1)
    reference = scipy.stats.ttest_rel(treatment, control)
    interval = reference.confidence_interval(confidence_level=0.9)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert (result.diff_lower, result.diff_upper) == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert result.diff == pytest.approx(float(np.mean(treatment - control)))
    assert result.users == 300


def test_a_constant_ratio_is_known_exactly() -> None:
    control = np.array([1.0, 2.0, 4.0, 8.0])
    result = paired(control, 1.1 * control)
    assert result.effect == pytest.approx(0.1)
    assert (result.lower, result.upper) == pytest.approx((0.1, 0.1))


def test_identical_arms_have_no_effect_and_p_value_one() -> None:
    control = np.array([1.0, 3.0, 2.0])
    result = paired(control, control)
    assert (result.effect, result.lower, result.upper, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_relative_interval_covers_the_true_effect_at_its_level() -> None:
    # 2,000 seeded experiments of 200 correlated pairs with a true relative effect of +5%. Coverage
    # of a 95% interval over 2,000 runs has a binomial standard error of 0.49 points; 4 of them
    # (0.9995 two-sided) bound it at [93.05%, 96.95%].
    rng = np.random.default_rng(7)
    runs, n, covered = 2000, 200, 0
    for _ in range(runs):
        listener = rng.lognormal(1.0, 0.6, n)
        control = listener + rng.normal(0, 0.5, n)
        treatment = 1.05 * listener + rng.normal(0, 0.5, n)
        result = paired(control, treatment)
        covered += result.lower <= 0.05 <= result.upper
    assert 0.9305 <= covered / runs <= 0.9695


def test_paired_is_narrower_than_an_ab_test_on_correlated_users() -> None:
    rng = np.random.default_rng(3)
    listener = rng.lognormal(1.0, 0.6, 2000)
    control, treatment = listener + rng.normal(0, 0.1, 2000), 1.02 * listener + rng.normal(0, 0.1, 2000)
    pair = paired(control, treatment)
    half = np.arange(2000) % 2 == 0
    ab = unpaired(control[half], treatment[~half])
    assert (float(ab.upper) - float(ab.lower)) > 3 * (pair.upper - pair.lower)


def test_unpaired_difference_is_welchs_interval() -> None:
    rng = np.random.default_rng(4)
    control, treatment = rng.normal(10, 2, 150), rng.normal(10.5, 3, 120)
    result = unpaired(control, treatment)
    interval = scipy.stats.ttest_ind(treatment, control, equal_var=False).confidence_interval()
    assert (float(result.diff_lower), float(result.diff_upper)) == pytest.approx((interval.low, interval.high), rel=1e-6)
    assert float(result.effect) == pytest.approx(treatment.mean() / control.mean() - 1)


def _result(lower: float, upper: float) -> PairedResult:
    return PairedResult(1.0, 1.0, (lower + upper) / 2, lower, upper, 0.0, 0.0, 0.0, 0.5, 10)


@pytest.mark.parametrize(
    ("lower", "upper", "higher_is_better", "max_drop", "expected"),
    [
        (-0.05, -0.01, True, 0.0, True),  # significantly lower, higher is better
        (-0.05, -0.01, True, 0.02, False),  # ... but within the allowed 2% drop
        (-0.05, 0.01, True, 0.0, False),  # not significant
        (0.01, 0.05, False, 0.0, True),  # significantly higher, lower is better (latency)
        (0.01, 0.05, True, 0.0, False),  # an improvement
    ],
)
def test_regressed_is_direction_aware(lower: float, upper: float, higher_is_better: bool, max_drop: float, expected: bool) -> None:
    assert regressed(_result(lower, upper), higher_is_better=higher_is_better, max_drop=max_drop) is expected


@pytest.mark.parametrize(
    ("control", "treatment", "message"),
    [
        ([1.0, 2.0], [1.0, 2.0, 3.0], "same length"),
        ([1.0], [2.0], "at least 2"),
        ([1.0, float("nan")], [1.0, 2.0], "finite"),
    ],
)
def test_bad_input_is_named(control: list[float], treatment: list[float], message: str) -> None:
    with pytest.raises(AbtestError, match=message):
        paired(control, treatment)
