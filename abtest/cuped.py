"""Variance reduction with pre-experiment covariates: CUPED and CUPAC, for user-level and ratio metrics.

CUPED (Deng, Xu, Kohavi and Walker, "Improving the Sensitivity of Online Controlled Experiments
by Utilizing Pre-Experiment Data", WSDM 2013, https://doi.org/10.1145/2433396.2433413) replaces
each user's value Y by Y - theta (X - mean X), with X a covariate fixed before the experiment (the
user's pre-period value of the metric) and theta = cov(Y, X) / var(X). X does not depend on the
arm, so the difference of means keeps its expectation while its variance shrinks by the factor
1 - rho^2 (rho = corr(Y, X)). Theta is fitted in each arm apart, around the covariate's mean over
both arms (Lin's fully interacted adjustment, 2013): when a treatment changes how the metric
follows its past, as a recommender that changes returns does, one pooled theta can widen one
arm's interval, a per-arm theta never does.

Ratio metrics (sum x / sum y over an arm's users) are first linearised by the delta method:
L = (x - R y) / mean(y), whose mean-variance is the ratio's delta-method variance (Deng, Knoblich
and Lu, "Applying the Delta Method in Metric Analytics", KDD 2018, https://arxiv.org/abs/1803.06336,
section 4); CUPED then adjusts L. A plain mean is the case y = 1.

CUPAC (Tang, Du, Dong and Sun, DoorDash, "Improving Experimental Power through Control Using
Predictions as Covariate", 2020) uses a model's prediction of the metric from pre-period
features as X; here an ordinary least-squares fit (statsmodels) on the user's pre-period time,
sessions, tracks, per-session means, whether they were seen at all and their exposure (below),
pooled over the arms. The
features are fixed before the experiment, so this is Lin's regression adjustment (Lin, "Agnostic
notes on regression adjustments to experimental data", Ann. Appl. Stat. 2013), consistent for
the same effect; with six features an in-sample fit costs a few degrees of freedom in thousands.

Users without a pre-period (new in the experiment) get the covariate's mean and, when some users
have one and some not, an indicator of having none as a second covariate (Deng et al. 2013,
section 3.4: the missing form a stratum of their own), so that new users' different mean is
adjusted too. Beside them, CUPED fits the user's exposure: the days from their first event in the
experiment to its last. A listener who arrives late has less time to listen; their first
session starts before any treatment reaches them, so the exposure is fixed before the
experiment as a pre-period value is (Deng et al. 2013, section 3.3: any covariate the
treatment cannot affect), and the truth's replay confirms that it is the same under every arm.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> x = rng.normal(size=4000); y = 0.8 * x + 0.6 * rng.normal(size=4000)
>>> arm = np.arange(4000) % 2
>>> fit = cuped(y, None, x, arm, control=0, treatment=1)
>>> round(fit.variance_reduction, 2)
0.64
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from abtest import stats
from abtest.errors import AbtestError
from abtest.metrics import MetricBaseAggregated, RatioOfSums, UserColumns
from contracts.columns import EVENTS_TABLE, MESSAGE_LAST, Columns, quote

METHODS = ("cuped", "cupac")

# The pre-period per-user columns (`UserColumns` names) and the metric column each one adjusts.
PRE_VALUES = (
    UserColumns.TIME,
    UserColumns.SESSIONS,
    UserColumns.TRACKS,
    UserColumns.MEAN_TIME_PER_SESSION,
    UserColumns.MEAN_TRACKS_PER_SESSION,
)


# Days from a user's first event in the experiment to the experiment's last: how long the user
# could be observed. Their first session's start precedes any treatment they get, so it is a
# pre-treatment covariate like the pre-period (the truth checks that it is the same under every arm).
EXPOSURE = "exposure_days"


class Adjusted(NamedTuple):
    """One arm pair after the adjustment.

    Attributes:
        control: The control arm's adjusted estimate.
        treatment: The treatment arm's adjusted estimate.
        theta: The regression coefficient of the (linearised) metric on the covariate, averaged over the two arms.
        variance_reduction: 1 - var(adjusted difference) / var(unadjusted difference).
    """

    control: stats.Estimate
    treatment: stats.Estimate
    theta: float
    variance_reduction: float


def linearise(numer: np.ndarray, denom: np.ndarray | None) -> tuple[float, np.ndarray]:
    """The ratio sum(numer)/sum(denom) and each user's linearised contribution (mean 0), after Deng et al. 2018."""
    if denom is None:
        value = float(np.mean(numer))
        return value, numer - value
    my = float(np.mean(denom))
    value = float(np.mean(numer)) / my
    return value, (numer - value * denom) / my


def cuped(
    numer: np.ndarray,
    denom: np.ndarray | None,
    covariate: np.ndarray,
    arm: np.ndarray,
    *,
    control: int,
    treatment: int,
    extra: np.ndarray | None = None,
) -> Adjusted:
    """CUPED-adjusted estimates of sum(numer)/sum(denom) (or the mean of `numer`) in two arms.

    Args:
        numer: Per-user numerator (or the per-user value of a mean).
        denom: Per-user denominator; None for a plain mean.
        covariate: Per-user pre-experiment covariate; NaN where a user has none (mean-imputed).
        arm: Per-user treatment index.
        control: The control arm's index.
        treatment: The treatment arm's index.
        extra: Further pre-treatment covariates (users x k, or one per user; NaN taken as the
            mean), fitted beside the first, e.g. the user's `EXPOSURE`.
    """
    x = np.asarray(covariate, dtype=float).copy()
    seen = np.isfinite(x)
    x[~seen] = x[seen].mean() if seen.any() else 0.0
    # Users without a covariate form a stratum of their own (Deng et al. 2013, section 3.4): an
    # indicator beside the mean-imputed value lets their mean differ from the others'.
    design = x[:, None] if seen.all() or not seen.any() else np.column_stack([x, (~seen).astype(float)])
    if extra is not None:
        more = np.asarray(extra, dtype=float).reshape(len(x), -1).copy()
        more = np.where(np.isfinite(more), more, np.nanmean(more, axis=0) if np.isfinite(more).any() else 0.0)
        design = np.column_stack([design, more])
    arms = (control, treatment)
    parts = []
    for a in arms:
        chosen = arm == a
        if chosen.sum() < 2:
            raise AbtestError(f"treatment {a} has {int(chosen.sum())} user(s), needs at least 2 for CUPED")
        value, lin = linearise(np.asarray(numer, dtype=float)[chosen], None if denom is None else np.asarray(denom, dtype=float)[chosen])
        parts.append((value, lin, design[chosen]))
    grand = np.concatenate([xa for _, _, xa in parts]).mean(axis=0)
    estimates, thetas, raw, adjusted = [], [], 0.0, 0.0
    for value, lin, xa in parts:
        n = len(lin)
        centred = xa - xa.mean(axis=0)
        coef = np.linalg.lstsq(centred, lin, rcond=None)[0]
        residual = lin - centred @ coef
        raw += float(np.var(lin, ddof=1)) / n
        adjusted += float(np.var(residual, ddof=1)) / n
        thetas.append(float(coef[0]))
        shift = float((xa.mean(axis=0) - grand) @ coef)
        estimates.append(stats.Estimate(value=value - shift, variance=float(np.var(residual, ddof=1)) / n, df=n - 1 - (xa.shape[1] - 1)))
    theta = float(np.mean(thetas))
    return Adjusted(estimates[0], estimates[1], theta, 1.0 - adjusted / raw if raw > 0 else 0.0)


def metric_columns(metric: MetricBaseAggregated) -> tuple[str, str | None]:
    """The per-user (numerator, denominator) columns of a mean or ratio metric."""
    if not isinstance(metric, RatioOfSums):
        raise AbtestError(f"{metric!r} is neither a mean nor a ratio of sums; CUPED adjusts those")
    return metric.numer, metric.denom


def covariate_for(metric: MetricBaseAggregated, pre: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """CUPED's covariate of `metric`: the user's pre-period value of the same per-user quantity, or None."""
    numer, denom = metric_columns(metric)
    if numer not in pre or (denom is not None and denom not in pre):
        return None
    if denom is None:
        return pre[numer]
    with np.errstate(divide="ignore", invalid="ignore"):
        return pre[numer] / pre[denom]


def cupac_covariate(metric: MetricBaseAggregated, values: Mapping[str, np.ndarray], pre: Mapping[str, np.ndarray]) -> np.ndarray:
    """CUPAC's covariate of `metric`: the OLS prediction of the user's metric value from pre-period features."""
    import statsmodels.api as sm

    numer, denom = metric_columns(metric)
    with np.errstate(divide="ignore", invalid="ignore"):
        target = values[numer] if denom is None else values[numer] / values[denom]
    seen = np.isfinite(pre[UserColumns.SESSIONS])
    features = [np.where(seen, np.nan_to_num(pre[name]), 0.0) for name in PRE_VALUES]
    if EXPOSURE in pre:
        exposure = np.asarray(pre[EXPOSURE], dtype=float)
        features.append(np.where(np.isfinite(exposure), exposure, np.nanmean(exposure) if np.isfinite(exposure).any() else 0.0))
    design = sm.add_constant(np.column_stack([*features, seen.astype(float)]), has_constant="add")
    usable = np.isfinite(target)
    fit = sm.OLS(target[usable], design[usable]).fit()
    return np.asarray(fit.predict(design))


def pre_period_sql(experiment: str) -> tuple[str, list[object]]:
    """Per-user pre-period values (`PRE_VALUES`) of completed sessions that ended before the
    experiment's first event, and every experiment user's `EXPOSURE`.

    Users of the experiment without a pre-period get NULL values. Sessions are grouped by session
    id; a log whose pre-period events lack one has no pre-period here.
    """
    u, c = UserColumns, Columns
    user, session, ts, message, time = quote(c.USER), quote(c.SESSION), quote(c.TS), quote(c.MESSAGE), quote(c.TIME)
    sql = f"""
        WITH start AS (SELECT min({ts}) AS t0, max({ts}) AS t1 FROM {EVENTS_TABLE} WHERE map_contains({quote(c.EXPERIMENTS)}, ?)),
        s AS (
            SELECT {user}, {session}, count(*) AS tracks, sum({time}) AS time
            FROM {EVENTS_TABLE}, start
            WHERE {ts} < start.t0 AND {session} IS NOT NULL AND NOT map_contains({quote(c.EXPERIMENTS)}, ?)
            GROUP BY {user}, {session}
            HAVING bool_or({message} = '{MESSAGE_LAST}') AND max({ts}) < any_value(start.t0)
        ),
        p AS (
            SELECT {user}, sum(time)::DOUBLE AS {quote(u.TIME)}, count(*)::DOUBLE AS {u.SESSIONS},
                   sum(tracks)::DOUBLE AS {u.TRACKS}, sum(time) / count(*) AS {u.MEAN_TIME_PER_SESSION},
                   sum(tracks) / count(*) AS {u.MEAN_TRACKS_PER_SESSION}
            FROM s GROUP BY {user}
        ),
        e AS (SELECT {user}, min({ts}) AS first FROM {EVENTS_TABLE} WHERE map_contains({quote(c.EXPERIMENTS)}, ?) GROUP BY {user})
        SELECT e.{user} AS {quote(u.USER)}, p.{quote(u.TIME)}, p.{u.SESSIONS}, p.{u.TRACKS}, p.{u.MEAN_TIME_PER_SESSION},
               p.{u.MEAN_TRACKS_PER_SESSION}, (epoch(start.t1) - epoch(e.first)) / 86400.0 AS {EXPOSURE}
        FROM e CROSS JOIN start LEFT JOIN p ON p.{user} = e.{user}"""
    return sql, [experiment, experiment, experiment]


def align_pre(users: np.ndarray, pre: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The pre-period columns (and `EXPOSURE` when given) in the order of `users` (NaN where a user has none)."""
    index = {int(user): i for i, user in enumerate(np.asarray(pre[UserColumns.USER]).tolist())}
    where = np.array([index.get(int(user), -1) for user in users], dtype=np.int64)
    out = {}
    for name in (*PRE_VALUES, *((EXPOSURE,) if EXPOSURE in pre else ())):
        column: np.ndarray = np.ma.filled(np.ma.asarray(pre[name], dtype=float), np.nan)  # NULL (no pre-period) -> NaN
        out[name] = np.where(where >= 0, column[np.maximum(where, 0)] if len(column) else np.nan, np.nan)
    return out
