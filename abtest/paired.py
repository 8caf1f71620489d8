"""Paired comparisons: two recommenders measured on the very same users (common random numbers).

When every user is simulated under both arms, each user contributes a pair (control value,
treatment value), and the noise that users share between arms cancels in the difference. The
paired t-test on the per-user differences (Student, 1908; `scipy.stats.ttest_rel`) gives the
absolute effect; the relative effect mean(t) / mean(c) - 1 gets a delta-method interval whose
variance keeps the covariance of the pair (Deng et al., 2018, https://arxiv.org/abs/1803.06336):

    se² = [var(t) / c̄² - 2 t̄ cov(t, c) / c̄³ + t̄² var(c) / c̄⁴] / n

With positively correlated pairs the covariance term makes the interval much narrower than an
A/B test's over the same users split in two (`unpaired` gives that one, for comparison).

>>> import numpy as np
>>> from abtest.paired import paired
>>> rng = np.random.default_rng(0)
>>> base = rng.normal(10, 2, 1000)
>>> result = paired(base, base * 1.05 + rng.normal(0, 0.1, 1000))
>>> round(result.effect, 3), bool(result.lower > 0.04 and result.upper < 0.06)
(0.05, True)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from abtest import stats
from abtest.config import resolve
from abtest.errors import AbtestError


class PairedResult(NamedTuple):
    """Treatment against control on the same users.

    Attributes:
        control: Mean of the control values.
        treatment: Mean of the treatment values.
        effect: Relative effect, treatment / control - 1.
        lower: Lower bound of the effect's (1 - alpha) delta-method interval.
        upper: Upper bound of that interval.
        diff: Mean of the per-user differences, treatment - control.
        diff_lower: Lower bound of the paired t interval of the difference.
        diff_upper: Upper bound of that interval.
        p_value: Two-sided p-value of the paired t-test (no difference).
        users: Number of pairs.
    """

    control: float
    treatment: float
    effect: float
    lower: float
    upper: float
    diff: float
    diff_lower: float
    diff_upper: float
    p_value: float
    users: int


def _pairs(control: ArrayLike, treatment: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(control, dtype=np.float64)
    t = np.asarray(treatment, dtype=np.float64)
    if c.ndim != 1 or c.shape != t.shape:
        raise AbtestError(f"control and treatment must be 1-d arrays of the same length (one value per user), got shapes {c.shape} and {t.shape}")
    if len(c) < 2:
        raise AbtestError(f"{len(c)} pair(s), a paired comparison needs at least 2")
    if not (np.isfinite(c).all() and np.isfinite(t).all()):
        raise AbtestError("control and treatment must be finite (no NaN or infinity)")
    return c, t


def paired(control: ArrayLike, treatment: ArrayLike, *, alpha: float | None = None) -> PairedResult:
    """The paired comparison of `treatment` with `control`, element i of each being user i's value.

    Args:
        control: Per-user values under the control (baseline).
        treatment: Per-user values under the treatment, in the same user order.
        alpha: Significance level (default from `abtest.config`); intervals have confidence 1 - alpha.
    """
    alpha = resolve("alpha", alpha)
    c, t = _pairs(control, treatment)
    n = len(c)
    d = t - c
    mc, mt, md = float(c.mean()), float(t.mean()), float(d.mean())
    q = float(stats._t_quantile(1 - alpha / 2, n - 1))
    se_d = float(d.std(ddof=1)) / np.sqrt(n)
    if se_d == 0:
        p_value = 1.0 if md == 0 else 0.0
    else:
        p_value = float(2 * stats._t_sf(abs(md) / se_d, n - 1))
    cov = np.cov(t, c, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = mt / mc - 1
        variance = float(stats.ratio_variance(mt, mc, cov[0, 0], cov[1, 1], cov[0, 1])) / n
    half = q * np.sqrt(max(variance, 0.0))
    return PairedResult(
        control=mc,
        treatment=mt,
        effect=float(effect),
        lower=float(effect - half),
        upper=float(effect + half),
        diff=md,
        diff_lower=md - q * se_d,
        diff_upper=md + q * se_d,
        p_value=p_value,
        users=n,
    )


def unpaired(control: ArrayLike, treatment: ArrayLike, *, alpha: float | None = None) -> stats.Comparison:
    """Welch's comparison of two independent groups of users (an A/B test), with the delta-method
    relative interval: the yardstick a paired interval is measured against."""
    c = np.asarray(control, dtype=np.float64)
    t = np.asarray(treatment, dtype=np.float64)
    if len(c) < 2 or len(t) < 2:
        raise AbtestError(f"{len(c)} control and {len(t)} treatment users, each arm needs at least 2")

    def estimate(x: np.ndarray) -> stats.Estimate:
        return stats.Estimate(float(x.mean()), float(x.var(ddof=1)) / len(x), len(x) - 1)

    return stats.compare(estimate(c), estimate(t), alpha=alpha, relative="delta")


def regressed(result: PairedResult, *, higher_is_better: bool, max_drop: float = 0.0) -> bool:
    """Whether the whole interval lies beyond the allowed worsening (a significant regression).

    `max_drop` is the largest tolerated worsening as a fraction of the control (a drop when
    higher is better, a rise otherwise), as in `abtest check`.
    """
    if max_drop < 0:
        raise AbtestError(f"max_drop == {max_drop}, must be >= 0")
    return result.upper < -max_drop if higher_is_better else result.lower > max_drop
