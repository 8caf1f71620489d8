"""Statistics of the A/B report: Welch's test, relative intervals, corrections, sample-ratio and power checks.

Every comparison starts from two independent `Estimate`s (an arm's metric value, the variance
of that value, and its degrees of freedom) and is vectorised over numpy arrays, so `abtest aa`
runs thousands of re-splits at once.

* Absolute difference: Welch's unequal-variance t-test with Welch-Satterthwaite degrees of
  freedom (Welch, 1947, https://doi.org/10.1093/biomet/34.1-2.28); never the pooled test.
* Relative effect (treatment / control - 1), accounting for the uncertainty of the control mean:
  - 'fieller' (default): Fieller's confidence set for a ratio of means (Fieller, 1954,
    https://doi.org/10.1111/j.2517-6161.1954.tb00159.x) with the Welch t quantile. The relative
    interval excludes 0 exactly when Welch's test rejects, so the p-value *is* Welch's p-value.
  - 'delta': the delta method, se² = var(t)/c² + t² var(c)/c⁴, and a t-test of the relative
    effect with that standard error; its p-value comes from the same statistic as its interval.
* Family-wise correction: Holm (default) or others through statsmodels' `multipletests`.
* Sample ratio mismatch: Pearson's chi-square test of users per arm against the configured split
  (scipy's `chisquare`; Fabijan et al., KDD 2019, https://doi.org/10.1145/3292500.3330722).
* Power: minimum detectable effect and users needed, through statsmodels' `TTestIndPower`.

The t distribution is evaluated with scipy.special's `stdtr`/`stdtrit`, the functions behind
`scipy.stats.t`, which import fast enough for a command line tool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.special

from abtest.config import resolve
from abtest.errors import AbtestError

ArrayLike = float | np.ndarray


class Estimate(NamedTuple):
    """An arm's metric value and its uncertainty.

    Attributes:
        value: Point estimate (e.g. the mean of per-user values).
        variance: Variance of the point estimate (squared standard error, e.g. s²/n).
        df: Degrees of freedom of that variance (n - 1).
    """

    value: ArrayLike
    variance: ArrayLike
    df: ArrayLike


class Comparison(NamedTuple):
    """Treatment against control.

    Attributes:
        effect: Relative effect, treatment / control - 1.
        lower: Lower bound of the relative effect's (1 - alpha) interval.
        upper: Upper bound of the relative effect's (1 - alpha) interval.
        p_value: Two-sided p-value of the procedure that gave the relative interval.
        significant: p_value < alpha, which is the same as the relative interval excluding 0.
        diff: Absolute difference, treatment - control.
        diff_lower: Lower bound of Welch's interval of the difference.
        diff_upper: Upper bound of Welch's interval of the difference.
        statistic: t statistic of the procedure.
        df: Welch-Satterthwaite degrees of freedom of the procedure.
    """

    effect: ArrayLike
    lower: ArrayLike
    upper: ArrayLike
    p_value: ArrayLike
    significant: ArrayLike
    diff: ArrayLike
    diff_lower: ArrayLike
    diff_upper: ArrayLike
    statistic: ArrayLike
    df: ArrayLike


def _t_sf(x: ArrayLike, df: ArrayLike) -> ArrayLike:
    """Survival function of Student's t: P(T > x)."""
    return scipy.special.stdtr(df, -np.asarray(x, dtype=float))


def _t_quantile(p: float, df: ArrayLike) -> ArrayLike:
    """Quantile function of Student's t."""
    return scipy.special.stdtrit(df, p)


def satterthwaite_df(v1: ArrayLike, df1: ArrayLike, v2: ArrayLike, df2: ArrayLike) -> ArrayLike:
    """Welch-Satterthwaite degrees of freedom of v1 + v2, two independent variance estimates.

    Computed in floating point: the squares of integer variances past 3e9 overflow int64."""
    v1, v2 = np.asarray(v1, dtype=float), np.asarray(v2, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (v1 + v2) ** 2 / (v1**2 / df1 + v2**2 / df2)


def welch(control: Estimate, treatment: Estimate, alpha: float | None = None) -> tuple[ArrayLike, ...]:
    """Welch's t-test of treatment - control: (diff, lower, upper, statistic, df, p_value).

    Matches `scipy.stats.ttest_ind(t, c, equal_var=False)` and its `confidence_interval()` when the
    estimates are sample means.
    """
    alpha = resolve("alpha", alpha)
    c, t = control, treatment
    diff = np.asarray(t.value, dtype=float) - c.value
    var = np.asarray(t.variance, dtype=float) + c.variance
    df = satterthwaite_df(t.variance, t.df, c.variance, c.df)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = diff / np.sqrt(var)
        half = _t_quantile(1 - alpha / 2, df) * np.sqrt(var)
    p_value = 2 * _t_sf(np.abs(statistic), df)
    degenerate = var == 0  # no spread in either arm: the difference is known exactly
    p_value = np.where(degenerate, np.where(diff == 0, 1.0, 0.0), p_value)
    half = np.where(degenerate, 0.0, half)
    return diff, diff - half, diff + half, statistic, df, p_value


def fieller_interval(
    control: Estimate, treatment: Estimate, alpha: float | None = None
) -> tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike]:
    """Fieller's (1 - alpha) set for treatment / control with Welch's quantile: (lower, upper, p_value, df).

    The set is {r : |t - r c| <= q sqrt(var(t) + r² var(c))}, q the Welch t quantile. It contains
    r = 1 exactly when Welch's test does not reject. When the control mean itself is not
    significantly away from 0 (c² <= q² var(c)) the set is unbounded: the whole line when
    Welch's test does not reject, else two rays, of which the one holding t / c is returned.
    """
    alpha = resolve("alpha", alpha)
    c, t = np.asarray(control.value, dtype=float), np.asarray(treatment.value, dtype=float)
    vc, vt = np.asarray(control.variance, dtype=float), np.asarray(treatment.variance, dtype=float)
    _, _, _, _, df, p_value = welch(control, treatment, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = _t_quantile(1 - alpha / 2, df)
        q = np.where(vc + vt == 0, 0.0, q)
        a = c * c - q * q * vc
        disc = np.maximum(t * t * vc + c * c * vt - q * q * vc * vt, 0.0)
        root_a = (t * c - q * np.sqrt(disc)) / a
        root_b = (t * c + q * np.sqrt(disc)) / a
        lo, hi = np.minimum(root_a, root_b), np.maximum(root_a, root_b)
        ratio = t / c
        # a == 0: the quadratic is linear, one finite end at (t² - q² var(t)) / (2 t c).
        linear_end = (t * t - q * q * vt) / (2 * t * c)
    rejected = p_value < alpha
    regular = a > 0
    upper_ray = np.where(a < 0, ratio >= hi, ratio >= linear_end)
    finite_end = np.where(a < 0, np.where(upper_ray, hi, lo), linear_end)
    lower = np.where(regular, lo, np.where(rejected & upper_ray, finite_end, -np.inf))
    upper = np.where(regular, hi, np.where(rejected & ~upper_ray, finite_end, np.inf))
    return lower, upper, p_value, df


def delta_relative(
    control: Estimate, treatment: Estimate, alpha: float | None = None
) -> tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike, ArrayLike, ArrayLike]:
    """Delta-method test of treatment / control - 1: (effect, lower, upper, statistic, df, p_value).

    se² = var(t)/c² + t² var(c)/c⁴ (first-order Taylor expansion of t/c); degrees of freedom by
    Welch-Satterthwaite over the two terms. The p-value tests effect = 0 with the same statistic.
    """
    alpha = resolve("alpha", alpha)
    c, t = np.asarray(control.value, dtype=float), np.asarray(treatment.value, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = t / c - 1
        v_t = np.asarray(treatment.variance, dtype=float) / (c * c)
        v_c = t * t * np.asarray(control.variance, dtype=float) / c**4
        se = np.sqrt(v_t + v_c)
        df = satterthwaite_df(v_t, treatment.df, v_c, control.df)
        statistic = effect / se
        half = _t_quantile(1 - alpha / 2, df) * se
    p_value = 2 * _t_sf(np.abs(statistic), df)
    degenerate = se == 0
    p_value = np.where(degenerate, np.where(effect == 0, 1.0, 0.0), p_value)
    half = np.where(degenerate, 0.0, half)
    return effect, effect - half, effect + half, statistic, df, p_value


def compare(
    control: Estimate, treatment: Estimate, *, alpha: float | None = None, relative: str | None = None
) -> Comparison:
    """Relative and absolute effect of treatment over control, with one consistent test.

    Args:
        control: The control arm's estimate.
        treatment: The treatment arm's estimate.
        alpha: Significance level; the intervals have confidence 1 - alpha.
        relative: 'fieller' (Welch's p-value, Fieller's interval) or 'delta' (delta-method test).
    """
    alpha = resolve("alpha", alpha)
    relative = resolve("relative", relative)
    diff, diff_lower, diff_upper, w_stat, w_df, w_p = welch(control, treatment, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        effect: ArrayLike = np.asarray(treatment.value, dtype=float) / control.value - 1
    if relative == "fieller":
        ratio_lower, ratio_upper, p_value, df = fieller_interval(control, treatment, alpha)
        lower, upper, statistic = ratio_lower - 1, ratio_upper - 1, w_stat
    else:
        effect, lower, upper, statistic, df, p_value = delta_relative(control, treatment, alpha)  # type: ignore[assignment]
    return Comparison(
        effect=effect,
        lower=lower,
        upper=upper,
        p_value=p_value,
        significant=np.asarray(p_value) < alpha,
        diff=diff,
        diff_lower=diff_lower,
        diff_upper=diff_upper,
        statistic=statistic,
        df=df,
    )


def ratio_variance(mx: ArrayLike, my: ArrayLike, vx: ArrayLike, vy: ArrayLike, cxy: ArrayLike) -> ArrayLike:
    """Per-unit delta-method variance of mean(x) / mean(y): var(x)/ȳ² - 2 x̄ cov/ȳ³ + x̄² var(y)/ȳ⁴."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return vx / my**2 - 2 * mx * cxy / my**3 + mx**2 * vy / my**4


def adjust(
    p_values: Sequence[float], *, method: str | None = None, alpha: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Family-wise (or FDR) adjusted p-values and rejections via statsmodels' `multipletests`.

    Holm's step-down method is the default (Holm, 1979, https://www.jstor.org/stable/4615733);
    it is computed here in numpy, as `multipletests` does, because importing statsmodels costs
    a report a third of a second. NaN p-values (untestable metrics) stay NaN and are left out
    of the family.
    """
    method = resolve("correction", method)
    alpha = resolve("alpha", alpha)
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    reject = np.zeros(p.shape, dtype=bool)
    finite = ~np.isnan(p)
    if method == "none" or finite.sum() < 2:  # a family of one needs no correction
        adjusted[finite] = p[finite]
        reject[finite] = p[finite] < alpha
        return adjusted, reject
    if method == "holm":
        p_adj, rej = _holm(p[finite], alpha)
    else:
        from statsmodels.stats.multitest import multipletests  # slow import, only when needed

        rej, p_adj, _, _ = multipletests(p[finite], alpha=alpha, method=method)
    adjusted[finite], reject[finite] = p_adj, rej
    return adjusted, reject


def _holm(p: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjusted p-values, min(1, max over j <= i of (m - j) p_(j)), and rejections."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    # Reject the hypotheses before the first sorted p-value that misses its level alpha / (m - j).
    misses = p[order] > alpha / (m - np.arange(m))
    first_miss = int(np.argmax(misses)) if misses.any() else m
    reject = np.zeros(m, dtype=bool)
    reject[order[:first_miss]] = True
    return adjusted, reject


class SrmResult(NamedTuple):
    """Sample-ratio-mismatch check.

    Attributes:
        observed: Users per arm, by treatment index.
        expected: Users per arm expected from the configured split.
        statistic: Pearson's chi-square statistic.
        p_value: Its p-value (k - 1 degrees of freedom).
        mismatch: p_value < srm_alpha: the split is broken and the results are not trustworthy.
    """

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    p_value: float
    mismatch: bool


def srm(observed: Sequence[int], weights: Sequence[float] | None = None, srm_alpha: float | None = None) -> SrmResult:
    """Chi-square test of users per arm against `weights` (default: an equal split): Pearson's
    statistic, as `scipy.stats.chisquare` computes it, and its p-value from scipy.special's
    `chdtrc` (the function behind `scipy.stats.chi2.sf`; scipy.stats itself imports slowly)."""
    srm_alpha = resolve("srm_alpha", srm_alpha)
    obs = np.asarray(observed, dtype=float)
    if len(obs) < 2:
        raise AbtestError(f"observed has {len(obs)} arm(s), a sample ratio check needs at least 2")
    w = np.ones_like(obs) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != obs.shape or (w <= 0).any():
        raise AbtestError(f"weights == {[float(x) for x in w]}, must be {len(obs)} positive numbers")
    expected = obs.sum() * w / w.sum()
    if obs.sum() == 0:
        return SrmResult(tuple(int(x) for x in obs), tuple(expected), math.nan, math.nan, False)
    statistic = float(((obs - expected) ** 2 / expected).sum())
    p_value = float(scipy.special.chdtrc(len(obs) - 1, statistic))
    return SrmResult(
        observed=tuple(int(x) for x in obs),
        expected=tuple(float(x) for x in expected),
        statistic=float(statistic),
        p_value=float(p_value),
        mismatch=bool(p_value < srm_alpha),
    )


def mde(
    sd: float,
    mean: float,
    n_control: int,
    n_treatment: int,
    *,
    alpha: float | None = None,
    power: float | None = None,
) -> float:
    """Minimum detectable relative effect (fraction of `mean`) for a two-sided t-test with these arm sizes.

    Solves statsmodels' `TTestIndPower` for the standardised effect d, then returns d * sd / mean.
    """
    from statsmodels.stats.power import TTestIndPower

    alpha = resolve("alpha", alpha)
    power = resolve("power", power)
    if n_control < 2 or n_treatment < 2:
        raise AbtestError(f"arms have {n_control} and {n_treatment} users, need at least 2 each")
    d = TTestIndPower().solve_power(
        effect_size=None, nobs1=n_control, alpha=alpha, power=power, ratio=n_treatment / n_control
    )
    return float(np.asarray(d).item()) * sd / abs(mean)


def users_needed(
    effect: float,
    sd: float,
    mean: float,
    *,
    ratio: float = 1.0,
    alpha: float | None = None,
    power: float | None = None,
) -> tuple[int, int]:
    """Users (control, treatment) needed to detect a relative `effect` with a two-sided t-test."""
    from statsmodels.stats.power import TTestIndPower

    alpha = resolve("alpha", alpha)
    power = resolve("power", power)
    if effect == 0:
        raise AbtestError("effect == 0, must be non-zero")
    d = abs(effect * mean) / sd
    n1 = TTestIndPower().solve_power(effect_size=d, nobs1=None, alpha=alpha, power=power, ratio=ratio)
    n1 = float(np.asarray(n1).item())
    return math.ceil(n1), math.ceil(n1 * ratio)


def proportion_interval(successes: int, trials: int, alpha: float | None = None) -> tuple[float, float]:
    """Exact (Clopper-Pearson) binomial interval of a proportion, via statsmodels' `proportion_confint`."""
    from statsmodels.stats.proportion import proportion_confint

    alpha = resolve("alpha", alpha)
    lower, upper = proportion_confint(successes, trials, alpha=alpha, method="beta")
    return float(lower), float(upper)
