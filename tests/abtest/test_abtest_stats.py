"""Statistics against scipy/statsmodels, the interval/p-value consistency property, and seeded coverage checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from abtest import stats
from abtest.errors import AbtestError
from abtest.metrics import Aggregates, Mean, RatioOfSums
from tests.abtest.conftest import within

RTOL = 1e-9


def mean_estimate(x: np.ndarray) -> stats.Estimate:
    return stats.Estimate(x.mean(), x.var(ddof=1) / len(x), len(x) - 1)


@pytest.mark.parametrize(("n_c", "n_t", "shift", "scale"), [(50, 50, 0.0, 1.0), (30, 200, 0.3, 3.0), (1000, 700, -0.05, 0.5)])
def test_welch_matches_scipy_and_statsmodels(n_c: int, n_t: int, shift: float, scale: float) -> None:
    rng = np.random.default_rng(n_c + n_t)
    c = rng.lognormal(1.0, 0.6, n_c)
    t = rng.lognormal(1.0 + shift, 0.6, n_t) * scale

    diff, lower, upper, statistic, df, p = stats.welch(mean_estimate(c), mean_estimate(t), alpha=0.05)

    ref = scipy.stats.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert float(statistic) == pytest.approx(ref.statistic, rel=RTOL)
    assert float(p) == pytest.approx(ref.pvalue, rel=RTOL)
    assert float(df) == pytest.approx(ref.df, rel=RTOL)
    assert (float(lower), float(upper)) == pytest.approx((ci.low, ci.high), rel=RTOL)
    sm = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    sm_stat, sm_p, sm_df = sm.ttest_ind(usevar="unequal")
    assert (float(statistic), float(p), float(df)) == pytest.approx((sm_stat, sm_p, sm_df), rel=RTOL)
    assert (float(lower), float(upper)) == pytest.approx(sm.tconfint_diff(alpha=0.05, usevar="unequal"), rel=RTOL)
    assert float(diff) == pytest.approx(t.mean() - c.mean(), rel=RTOL)


def test_mean_metric_p_value_is_welchs_and_effect_is_relative() -> None:
    rng = np.random.default_rng(11)
    c, t = rng.gamma(2.0, 1.5, 400), rng.gamma(2.0, 1.65, 380)
    data = {0: Aggregates.from_arrays(v=c), 1: Aggregates.from_arrays(v=t)}

    result = Mean("v", relative="fieller").analyze_aggregates(data, control=0, treatment=1)

    ref = scipy.stats.ttest_ind(t, c, equal_var=False)
    assert result.p_value == pytest.approx(ref.pvalue, rel=RTOL)
    assert result.effect == pytest.approx(t.mean() / c.mean() - 1, rel=RTOL)
    assert (result.control_users, result.treatment_users) == (400, 380)
    assert result.significant == (ref.pvalue < 0.05)


def fieller_roots(c: stats.Estimate, t: stats.Estimate, q: float) -> tuple[float, float]:
    """Roots of (t - r c)^2 = q^2 (v_t + r^2 v_c), found numerically on each side of t / c."""

    def f(r: float) -> float:
        return (t.value - r * c.value) ** 2 - q * q * (t.variance + r * r * c.variance)

    ratio = t.value / c.value
    return scipy.optimize.brentq(f, ratio - 10, ratio, xtol=1e-14), scipy.optimize.brentq(f, ratio, ratio + 10, xtol=1e-14)


def test_fieller_bounds_solve_fiellers_equation() -> None:
    rng = np.random.default_rng(5)
    c, t = rng.normal(10, 4, 300), rng.normal(10.8, 5, 250)
    ec, et = mean_estimate(c), mean_estimate(t)
    df = stats.satterthwaite_df(et.variance, et.df, ec.variance, ec.df)
    q = scipy.stats.t.ppf(0.975, df)

    lower, upper, p, _ = stats.fieller_interval(ec, et, alpha=0.05)

    assert (float(lower), float(upper)) == pytest.approx(fieller_roots(ec, et, q), rel=RTOL)
    assert float(p) == pytest.approx(scipy.stats.ttest_ind(t, c, equal_var=False).pvalue, rel=RTOL)


def test_delta_method_matches_direct_formula() -> None:
    rng = np.random.default_rng(6)
    c, t = rng.normal(10, 4, 300), rng.normal(10.8, 5, 250)
    ec, et = mean_estimate(c), mean_estimate(t)

    effect, lower, upper, statistic, df, p = stats.delta_relative(ec, et, alpha=0.05)

    se = math.sqrt(et.variance / ec.value**2 + et.value**2 * ec.variance / ec.value**4)
    a, b = et.variance / ec.value**2, et.value**2 * ec.variance / ec.value**4
    df_ref = (a + b) ** 2 / (a * a / et.df + b * b / ec.df)
    q = scipy.stats.t.ppf(0.975, df_ref)
    r = et.value / ec.value - 1
    assert (float(effect), float(lower), float(upper)) == pytest.approx((r, r - q * se, r + q * se), rel=RTOL)
    assert float(p) == pytest.approx(2 * scipy.stats.t.sf(abs(r / se), df_ref), rel=RTOL)


estimates = st.builds(
    stats.Estimate,
    value=st.floats(-1e3, 1e3).filter(lambda v: abs(v) > 1e-3),
    variance=st.floats(0.0, 1e3),
    df=st.integers(1, 10_000).map(float),
)


@settings(max_examples=400, deadline=None)
@given(control=estimates, treatment=estimates, alpha=st.sampled_from([0.01, 0.05, 0.1, 0.2]), relative=st.sampled_from(["fieller", "delta"]))
def test_interval_excludes_zero_iff_p_below_alpha(
    control: stats.Estimate, treatment: stats.Estimate, alpha: float, relative: str
) -> None:
    cmp = stats.compare(control, treatment, alpha=alpha, relative=relative)

    p = float(cmp.p_value)
    assume(not math.isnan(p) and abs(p - alpha) > 1e-9)  # exactly at the boundary, rounding decides
    excludes_zero = float(cmp.lower) > 0 or float(cmp.upper) < 0
    assert excludes_zero == bool(cmp.significant) == (p < alpha)
    assert float(cmp.lower) <= float(cmp.upper)


def test_fieller_unbounded_when_control_mean_is_not_away_from_zero() -> None:
    control = stats.Estimate(0.1, 1.0, 50.0)  # control mean far inside its own noise
    flat = stats.compare(control, stats.Estimate(0.2, 1.0, 50.0), alpha=0.05, relative="fieller")
    strong = stats.compare(control, stats.Estimate(30.0, 1.0, 50.0), alpha=0.05, relative="fieller")

    assert (float(flat.lower), float(flat.upper)) == (-math.inf, math.inf)
    assert not flat.significant
    assert strong.significant
    assert float(strong.lower) > 0 and float(strong.upper) == math.inf  # the ray holding t / c, excluding 0


def test_no_spread_gives_exact_answers() -> None:
    same = stats.compare(stats.Estimate(2.0, 0.0, 9.0), stats.Estimate(2.0, 0.0, 9.0), alpha=0.05)
    other = stats.compare(stats.Estimate(2.0, 0.0, 9.0), stats.Estimate(3.0, 0.0, 9.0), alpha=0.05)

    assert (float(same.p_value), bool(same.significant), float(same.effect)) == (1.0, False, 0.0)
    assert (float(other.p_value), bool(other.significant)) == (0.0, True)
    assert float(other.lower) == float(other.upper) == pytest.approx(0.5)
    # The difference is known exactly too: Welch's interval is the point 1.0 (its df is 0 / 0).
    assert (float(other.diff_lower), float(other.diff_upper)) == (1.0, 1.0)


def test_ratio_variance_is_the_variance_of_the_linearised_values() -> None:
    rng = np.random.default_rng(8)
    y = rng.poisson(4, 500) + 1.0
    x = y * rng.gamma(3, 1, 500)
    agg = Aggregates.from_arrays(x=x, y=y)

    est = RatioOfSums("time", "sessions").estimate(
        Aggregates(agg.count, {"time": agg.means["x"], "sessions": agg.means["y"]},
                   {"time": agg.variances["x"], "sessions": agg.variances["y"]},
                   {("sessions", "time"): agg.covariances[("x", "y")]})
    )

    linear = x / y.mean() - x.mean() * y / y.mean() ** 2
    assert float(est.value) == pytest.approx(x.sum() / y.sum(), rel=RTOL)
    assert float(est.variance) == pytest.approx(linear.var(ddof=1) / len(x), rel=RTOL)


def test_holm_matches_statsmodels_and_skips_nan() -> None:
    p = [0.01, float("nan"), 0.04, 0.03, 0.5]

    adjusted, reject = stats.adjust(p, method="holm", alpha=0.05)

    ref_reject, ref_p, _, _ = multipletests([0.01, 0.04, 0.03, 0.5], alpha=0.05, method="holm")
    assert np.isnan(adjusted[1]) and not reject[1]
    np.testing.assert_allclose(adjusted[[0, 2, 3, 4]], ref_p, rtol=RTOL)
    assert list(reject[[0, 2, 3, 4]]) == list(ref_reject)


@pytest.mark.parametrize("seed", range(20))
def test_holm_matches_statsmodels_on_random_families(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 12))
    # Mixtures of tiny, borderline and null p-values, with ties, hit every branch of the step-down.
    p = rng.choice([rng.uniform(0, 0.01), 0.05 / m, 0.02, 0.5], size=m) if seed % 2 else rng.uniform(0, 0.2, size=m) ** 2

    adjusted, reject = stats.adjust(list(p), method="holm", alpha=0.05)

    ref_reject, ref_p, _, _ = multipletests(p, alpha=0.05, method="holm")
    np.testing.assert_allclose(adjusted, ref_p, rtol=RTOL)
    assert list(reject) == list(ref_reject)


def test_srm_matches_chisquare_and_flags_a_broken_split() -> None:
    ok = stats.srm([5020, 4980, 5003], srm_alpha=0.001)
    broken = stats.srm([5000, 4600], srm_alpha=0.001)

    ref = scipy.stats.chisquare([5020, 4980, 5003])
    assert ok.p_value == pytest.approx(ref.pvalue, rel=RTOL)
    assert ok.statistic == pytest.approx(ref.statistic, rel=RTOL)
    uneven = stats.srm([700, 310], weights=[2, 1])
    ref_uneven = scipy.stats.chisquare([700, 310], [1010 * 2 / 3, 1010 / 3])
    assert uneven.p_value == pytest.approx(ref_uneven.pvalue, rel=RTOL)
    assert not ok.mismatch
    assert broken.mismatch and broken.expected == (4800.0, 4800.0)


def test_srm_rejects_bad_weights() -> None:
    with pytest.raises(AbtestError, match="weights"):
        stats.srm([10, 10], weights=[1, 0])


def test_mde_and_users_needed_agree_with_statsmodels_power() -> None:
    mde = stats.mde(sd=2.0, mean=5.0, n_control=1000, n_treatment=1000, alpha=0.05, power=0.8)
    need_c, need_t = stats.users_needed(mde, sd=2.0, mean=5.0, alpha=0.05, power=0.8)

    achieved = TTestIndPower().power(effect_size=mde * 5.0 / 2.0, nobs1=1000, alpha=0.05, ratio=1.0)
    assert achieved == pytest.approx(0.8, rel=1e-6)
    assert need_c == need_t and abs(need_c - 1000) <= 1


@pytest.mark.parametrize("relative", ["fieller", "delta"])
def test_relative_interval_covers_known_effect_at_nominal_rate(relative: str) -> None:
    """5,000 seeded experiments with a true +8% effect on skewed per-user values (binomial band:
    a 2-point miscalibration fails with probability >= 0.98, docs/testing.md)."""
    rng = np.random.default_rng(2024)
    runs, n = 5000, 400
    c = rng.gamma(2.0, 1.0, (runs, n))  # mean 2
    t = rng.gamma(2.0, 1.08, (runs, n))  # mean 2.16: +8% exactly
    est = [stats.Estimate(x.mean(1), x.var(1, ddof=1) / n, np.full(runs, n - 1.0)) for x in (c, t)]

    cmp = stats.compare(est[0], est[1], alpha=0.05, relative=relative)

    coverage = np.mean((cmp.lower <= 0.08) & (0.08 <= cmp.upper))
    assert within(0.95, float(coverage), runs)


def test_false_positive_rate_is_alpha_without_effect() -> None:
    rng = np.random.default_rng(7)
    runs, n = 5000, 300
    c, t = rng.exponential(3.0, (runs, n)), rng.exponential(3.0, (runs, n))
    est = [stats.Estimate(x.mean(1), x.var(1, ddof=1) / n, np.full(runs, n - 1.0)) for x in (c, t)]

    cmp = stats.compare(est[0], est[1], alpha=0.05)

    assert within(0.05, float(np.mean(cmp.significant)), runs)
    assert scipy.stats.kstest(cmp.p_value, "uniform").pvalue > 1e-3


def test_ratio_of_sums_interval_covers_known_ratio() -> None:
    """Per-user sessions y and time x = y * g: true time per session is E[g], +10% in treatment."""
    rng = np.random.default_rng(99)
    runs, n = 5000, 300
    estimates = []
    for gain in (1.0, 1.1):
        y = rng.poisson(4.0, (runs, n)) + 1.0
        x = rng.gamma(2.0 * y, 1.5 * gain)  # sum of y gamma(2, 1.5*gain) session times
        mx, my = x.mean(1), y.mean(1)
        vx, vy = x.var(1, ddof=1), y.var(1, ddof=1)
        cxy = ((x - mx[:, None]) * (y - my[:, None])).sum(1) / (n - 1)
        estimates.append(stats.Estimate(mx / my, stats.ratio_variance(mx, my, vx, vy, cxy) / n, np.full(runs, n - 1.0)))

    cmp = stats.compare(estimates[0], estimates[1], alpha=0.05)

    coverage = np.mean((cmp.lower <= 0.1) & (0.1 <= cmp.upper))
    assert within(0.95, float(coverage), runs)


def test_proportion_interval_is_clopper_pearson() -> None:
    lower, upper = stats.proportion_interval(50, 1000, alpha=0.05)

    assert lower == pytest.approx(scipy.stats.beta.ppf(0.025, 50, 951), rel=1e-9)
    assert upper == pytest.approx(scipy.stats.beta.ppf(0.975, 51, 950), rel=1e-9)


def test_fieller_uses_the_alpha_it_is_given() -> None:
    rng = np.random.default_rng(6)
    ec, et = mean_estimate(rng.normal(10, 4, 300)), mean_estimate(rng.normal(10.8, 5, 250))
    df = stats.satterthwaite_df(et.variance, et.df, ec.variance, ec.df)

    lower, upper, _, _ = stats.fieller_interval(ec, et, alpha=0.2)

    assert (float(lower), float(upper)) == pytest.approx(fieller_roots(ec, et, scipy.stats.t.ppf(0.9, df)), rel=RTOL)


def test_fieller_with_a_linear_equation_keeps_the_ray_of_the_ratio() -> None:
    """c² = q² var(c): Fieller's quadratic is linear, its one finite end (t² - q² var(t)) / (2 t c)."""
    q = float(scipy.stats.t.ppf(0.975, stats.satterthwaite_df(1.0, 1e6, 1.0, 1e6)))
    control, treatment = stats.Estimate(q, 1.0, 1e6), stats.Estimate(30.0, 1.0, 1e6)

    lower, upper, p, _ = stats.fieller_interval(control, treatment, alpha=0.05)

    assert float(p) < 0.05
    assert float(lower) == pytest.approx((30.0**2 - q * q) / (2 * 30.0 * q), rel=1e-9) and float(upper) == math.inf


@pytest.mark.parametrize("relative", ["fieller", "delta"])
def test_no_spread_gives_exact_answers_with_either_interval(relative: str) -> None:
    same = stats.compare(stats.Estimate(2.0, 0.0, 9.0), stats.Estimate(2.0, 0.0, 9.0), alpha=0.05, relative=relative)
    other = stats.compare(stats.Estimate(2.0, 0.0, 9.0), stats.Estimate(3.0, 0.0, 9.0), alpha=0.05, relative=relative)

    assert (float(same.p_value), float(same.lower), float(same.upper)) == (1.0, 0.0, 0.0)
    assert float(other.p_value) == 0.0 and float(other.lower) == float(other.upper) == pytest.approx(0.5)


def test_srm_edge_cases_and_its_threshold() -> None:
    nothing = stats.srm([0, 0])
    one = stats.srm([1, 0])
    p = float(scipy.stats.chisquare([5000, 4800]).pvalue)

    assert (nothing.observed, nothing.expected, nothing.mismatch) == ((0, 0), (0.0, 0.0), False)
    assert math.isnan(nothing.statistic) and math.isnan(nothing.p_value)
    assert one.observed == (1, 0) and one.statistic == pytest.approx(1.0)
    assert stats.srm([5000, 4800], srm_alpha=p).mismatch is False  # strictly below the threshold only
    assert stats.srm([5000, 4800], srm_alpha=p * 1.01).mismatch is True
    assert stats.srm([5000, 4800]).mismatch is False and stats.srm([5000, 4800], srm_alpha=0.05).mismatch is True  # p = 0.043
    with pytest.raises(AbtestError, match=r"observed has 1 arm\(s\), a sample ratio check needs at least 2"):
        stats.srm([10])


def test_mde_and_users_needed_use_their_alpha_power_and_ratio() -> None:
    mde = stats.mde(sd=2.0, mean=5.0, n_control=1000, n_treatment=3000, alpha=0.1, power=0.9)
    achieved = TTestIndPower().power(effect_size=mde * 5.0 / 2.0, nobs1=1000, alpha=0.1, ratio=3.0)
    need_c, need_t = stats.users_needed(0.04, sd=2.0, mean=5.0, ratio=3.0, alpha=0.1, power=0.9)
    n1 = TTestIndPower().solve_power(effect_size=0.04 * 5.0 / 2.0, alpha=0.1, power=0.9, ratio=3.0)

    assert achieved == pytest.approx(0.9, rel=1e-4)  # statsmodels solves to about 1e-5
    assert (need_c, need_t) == (math.ceil(n1), math.ceil(3.0 * n1))
    assert stats.mde(sd=2.0, mean=5.0, n_control=2, n_treatment=2) > 0
    for n_control, n_treatment in ((1, 50), (50, 1)):
        with pytest.raises(AbtestError, match=f"arms have {n_control} and {n_treatment} users, need at least 2 each"):
            stats.mde(sd=2.0, mean=5.0, n_control=n_control, n_treatment=n_treatment)
    with pytest.raises(AbtestError, match="effect == 0, must be non-zero"):
        stats.users_needed(0.0, sd=2.0, mean=5.0)
    assert stats.users_needed(1.0, sd=2.0, mean=5.0)[0] >= 2  # an effect of 100% is not "no effect"


def test_proportion_interval_uses_its_alpha() -> None:
    lower, upper = stats.proportion_interval(50, 1000, alpha=0.2)

    assert lower == pytest.approx(scipy.stats.beta.ppf(0.1, 50, 951), rel=1e-9)
    assert upper == pytest.approx(scipy.stats.beta.ppf(0.9, 51, 950), rel=1e-9)


def test_delta_method_uses_the_alpha_it_is_given() -> None:
    rng = np.random.default_rng(6)
    ec, et = mean_estimate(rng.normal(10, 4, 300)), mean_estimate(rng.normal(10.8, 5, 250))
    a, b = et.variance / ec.value**2, et.value**2 * ec.variance / ec.value**4
    q = scipy.stats.t.ppf(0.9, (a + b) ** 2 / (a * a / et.df + b * b / ec.df))
    r, se = et.value / ec.value - 1, math.sqrt(a + b)

    cmp = stats.compare(ec, et, alpha=0.2, relative="delta")

    assert (float(cmp.lower), float(cmp.upper)) == pytest.approx((r - q * se, r + q * se), rel=RTOL)


def test_integer_estimates_do_not_overflow() -> None:
    """Totals in milliseconds passed as Python ints (5e9 squared is past int64) give the intervals of floats.

    The Welch-Satterthwaite degrees of freedom once squared integer variances in int64 and overflowed.
    """
    control, treatment = stats.Estimate(5_000_000_000, 10**16, 999), stats.Estimate(5_400_000_000, 2 * 10**16, 999)
    c, t, vc, vt = 5e9, 5.4e9, 1e16, 2e16
    q = scipy.stats.t.ppf(0.975, (vt + vc) ** 2 / (vt**2 / 999 + vc**2 / 999))
    a, b = vt / c**2, t**2 * vc / c**4
    q_delta = scipy.stats.t.ppf(0.975, (a + b) ** 2 / (a * a / 999 + b * b / 999))

    fieller = stats.compare(control, treatment, alpha=0.05, relative="fieller")
    delta = stats.compare(control, treatment, alpha=0.05, relative="delta")

    roots = fieller_roots(stats.Estimate(c, vc, 999.0), stats.Estimate(t, vt, 999.0), q)
    assert (float(fieller.lower), float(fieller.upper)) == pytest.approx((roots[0] - 1, roots[1] - 1), rel=1e-9)
    r = t / c - 1
    assert (float(delta.lower), float(delta.upper)) == pytest.approx((r - q_delta * math.sqrt(a + b), r + q_delta * math.sqrt(a + b)), rel=RTOL)


def test_ratio_variance_of_a_zero_denominator_is_not_finite_and_warns_nothing() -> None:
    # An arm whose denominator mean is 0 (no sessions) has no ratio: inf or nan, not a RuntimeWarning
    # (the suite turns warnings into errors, and a report would print them).
    variance = stats.ratio_variance(np.array([2.0, 0.0]), np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([1.0, 0.0]), np.array([0.5, 0.0]))

    assert not np.isfinite(variance).any()


@pytest.mark.parametrize(("method", "alpha"), [("bonferroni", 0.1), ("bonferroni", 0.05), ("fdr_bh", 0.1), ("holm", 0.1)])
def test_adjust_uses_the_method_and_alpha_it_is_given(method: str, alpha: float) -> None:
    # The methods and levels reject different sets here: Bonferroni at 0.1 rejects 0.004 and 0.02
    # (below 0.1 / 4), Holm and BH at 0.1 also 0.03, Bonferroni at 0.05 only 0.004.
    p = [0.004, 0.02, 0.03, 0.6]

    adjusted, reject = stats.adjust(p, method=method, alpha=alpha)

    ref_reject, ref_p, _, _ = multipletests(p, alpha=alpha, method=method)
    np.testing.assert_allclose(adjusted, ref_p, rtol=RTOL)
    assert reject.dtype == np.bool_ and list(reject) == list(ref_reject)


def test_adjust_leaves_a_family_of_one_and_method_none_uncorrected() -> None:
    # "none": the p-values as they are, rejected strictly below alpha (as `compare` does).
    adjusted, reject = stats.adjust([0.01, 0.05, 0.04], method="none", alpha=0.05)
    np.testing.assert_array_equal(adjusted, [0.01, 0.05, 0.04])
    assert reject.dtype == np.bool_ and list(reject) == [True, False, True]
    # A family of one (other metrics untestable): nothing to correct, even with Holm.
    adjusted, reject = stats.adjust([float("nan"), 0.05], method="holm", alpha=0.05)
    assert np.isnan(adjusted[0]) and adjusted[1] == 0.05 and list(reject) == [False, False]
    # A family of two is corrected: Holm doubles the smaller p-value.
    adjusted, reject = stats.adjust([0.03, 0.04], method="holm", alpha=0.05)
    np.testing.assert_allclose(adjusted, [0.06, 0.06])
    assert list(reject) == [False, False]


def test_bad_srm_weights_and_a_zero_effect_get_one_exact_line() -> None:
    with pytest.raises(AbtestError, match=r"^weights == \[1\.0, 0\.0\], must be 2 positive numbers$"):
        stats.srm([10, 10], weights=[1, 0])
    with pytest.raises(AbtestError, match=r"^effect == 0, must be non-zero$"):
        stats.users_needed(0.0, sd=2.0, mean=5.0)


def test_compare_uses_the_alpha_and_the_interval_it_is_given() -> None:
    rng = np.random.default_rng(6)
    c, t = rng.normal(10, 4, 300), rng.normal(10.8, 5, 250)
    ec, et = mean_estimate(c), mean_estimate(t)
    q = scipy.stats.t.ppf(0.9, stats.satterthwaite_df(et.variance, et.df, ec.variance, ec.df))
    welch_ci = scipy.stats.ttest_ind(t, c, equal_var=False).confidence_interval(0.8)

    cmp = stats.compare(ec, et, alpha=0.2, relative="fieller")

    lower, upper = fieller_roots(ec, et, q)
    assert (float(cmp.lower), float(cmp.upper)) == pytest.approx((lower - 1, upper - 1), rel=RTOL)
    assert (float(cmp.diff_lower), float(cmp.diff_upper)) == pytest.approx((welch_ci.low, welch_ci.high), rel=RTOL)


def test_significance_is_strictly_below_alpha() -> None:
    # alpha set to the comparison's own p-value (Welch's, checked against scipy above, which agrees
    # to about 1e-15 only): not significant, and for a control mean inside its noise Fieller's set
    # is then the whole line (not rejected), not a ray.
    for control in (stats.Estimate(10.0, 1.0, 50.0), stats.Estimate(0.1, 1.0, 50.0)):
        treatment = stats.Estimate(13.0, 1.0, 50.0)
        p = float(stats.welch(control, treatment)[5])
        assert p == pytest.approx(scipy.stats.ttest_ind_from_stats(13.0, math.sqrt(51), 51, float(control.value), math.sqrt(51), 51, equal_var=False).pvalue, rel=1e-9)
        cmp = stats.compare(control, treatment, alpha=p, relative="fieller")
        assert not bool(cmp.significant)
    assert (float(cmp.lower), float(cmp.upper)) == (-math.inf, math.inf)


def test_fieller_is_bounded_for_a_control_away_from_zero_at_any_scale() -> None:
    # c² - q² var(c) is about 0.96 here: positive, so the set is an interval (the Fieller roots).
    control, treatment = stats.Estimate(1.0, 0.01, 1000.0), stats.Estimate(1.5, 0.01, 1000.0)
    q = scipy.stats.t.ppf(0.975, stats.satterthwaite_df(0.01, 1000.0, 0.01, 1000.0))

    lower, upper, _, _ = stats.fieller_interval(control, treatment, alpha=0.05)

    assert (float(lower), float(upper)) == pytest.approx(fieller_roots(control, treatment, q), rel=1e-9)


def test_fieller_ray_ends_at_the_root_of_fiellers_equation() -> None:
    """Control mean inside its noise, Welch rejects: the ray holding t / c, whose end solves (t - r c)² = q² (v_t + r² v_c)."""
    control, treatment = stats.Estimate(0.1, 1.0, 50.0), stats.Estimate(30.0, 1.0, 50.0)
    q = float(scipy.stats.t.ppf(0.975, stats.satterthwaite_df(1.0, 50.0, 1.0, 50.0)))
    vertex = 30.0 * 0.1 / (0.1**2 - q * q)  # the quadratic's top: the root lies between it and t / c

    lower, upper, _, _ = stats.fieller_interval(control, treatment, alpha=0.05)

    end = scipy.optimize.brentq(lambda r: (30.0 - r * 0.1) ** 2 - q * q * (1.0 + r * r), vertex, 300.0, xtol=1e-14)
    assert float(lower) == pytest.approx(end, rel=1e-9) and float(upper) == math.inf


def test_a_control_mean_of_zero_gives_no_effect_and_warns_nothing() -> None:
    # Relative effects of a zero control are undefined (inf, nan), never a RuntimeWarning.
    control = stats.Estimate(np.array([0.0, 0.0]), np.array([1.0, 1.0]), np.array([50.0, 50.0]))
    treatment = stats.Estimate(np.array([1.0, 0.0]), np.array([1.0, 1.0]), np.array([50.0, 50.0]))

    for relative in ("fieller", "delta"):
        cmp = stats.compare(control, treatment, alpha=0.05, relative=relative)
        assert not np.isfinite(cmp.effect).any()
