"""Off-policy estimators: the value of a candidate policy from decisions logged by another.

Pure numpy over per-decision arrays, in the shape of Open Bandit Pipeline's estimators (which
pins older numpy and scikit-learn than this project): each estimator turns the logged decisions
into per-decision terms whose mean is the estimate, and every interval comes from those terms
clustered by listener (decisions of one listener are not independent), with the normal
quantile. A decision i has the logged reward r_i (the listen fraction of the served track), the
logging policy's probability p_i of the served track, the candidate's probability pi_i of that
same track, and, for the model-based estimators, a reward model's prediction q_i for the served
track and qpi_i for the candidate's choice (sum over tracks of pi(a) q(a); for a deterministic
candidate, q at its track). With the importance weight w_i = pi_i / p_i:

- IPS (Horvitz and Thompson 1952, https://doi.org/10.1080/01621459.1952.10483446):
  mean(w r). Unbiased when p covers every track pi can choose; its variance grows with the weights.
- SNIPS (Swaminathan and Joachims 2015, https://papers.nips.cc/paper/5748): sum(w r) / sum(w).
  Biased (a ratio) but consistent, with far less variance when the weights are large.
- DM (the direct method): mean(qpi). Only as good as the reward model; no weights.
- DR (Dudik, Langford and Li 2011, https://arxiv.org/abs/1103.4601): mean(qpi + w (r - q)).
  Unbiased when either the weights or the reward model are right, with less variance than IPS.
- Switch-DR (Wang, Agarwal and Dudik 2017, https://arxiv.org/abs/1612.01205): DR's correction
  only where w <= tau, DM alone elsewhere: trades a bias for bounded variance.

Per session (a listener's time per session): per-decision importance sampling (Precup, Sutton
and Singh 2000, "Eligibility traces for off-policy policy evaluation") weights the reward of
step t by the product of the weights of steps 1..t, so a reward counts only as far as the
candidate would have taken the same path: `pdis`; its self-normalised form divides each step's
weights by their mean over sessions (`wpdis`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.special

from abtest.config import resolve
from abtest.errors import AbtestError

ESTIMATORS = ("ips", "snips", "dm", "dr", "switch-dr")
DEFAULT_TAU = 10.0  # Switch-DR's weight threshold


class OpeEstimate(NamedTuple):
    """An off-policy estimate of a policy's value.

    Attributes:
        estimator: the estimator's name (`ESTIMATORS`, `pdis`, `wpdis`).
        value: the estimated value (mean reward per decision, or per session).
        lower: lower bound of the (1 - alpha) interval, clustered by listener.
        upper: upper bound of that interval.
        se: the standard error behind the interval.
        decisions: logged decisions (or sessions) used.
        clusters: listeners they belong to.
    """

    estimator: str
    value: float
    lower: float
    upper: float
    se: float
    decisions: int
    clusters: int


def _check(name: str, array: np.ndarray, n: int) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.shape != (n,):
        raise AbtestError(f"{name} has shape {array.shape}, must be ({n},) like the rewards")
    if not np.all(np.isfinite(array)):
        raise AbtestError(f"{name} has values that are not finite")
    return array


def clustered_mean(terms: np.ndarray, clusters: np.ndarray | None = None, alpha: float | None = None) -> tuple[float, float, float, float, int]:
    """(mean, lower, upper, se, clusters) of `terms`, the standard error clustered by `clusters`.

    The cluster-robust variance of a mean (Liang and Zeger 1986): sum over clusters of the squared
    sum of the cluster's deviations, over n^2, times G / (G - 1); each decision is its own
    cluster when `clusters` is None.
    """
    alpha = resolve("alpha", alpha)
    terms = np.asarray(terms, dtype=np.float64)
    n = len(terms)
    if n == 0:
        raise AbtestError("no logged decisions to estimate from")
    mean = float(terms.mean())
    sums: np.ndarray
    if clusters is None:
        sums, groups = terms - mean, n
    else:
        _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        sums = np.bincount(inverse, weights=terms - mean)
        groups = len(sums)
    variance = float((sums**2).sum()) / n**2 * (groups / (groups - 1) if groups > 1 else math.inf)
    se = float(np.sqrt(variance))
    z = float(scipy.special.ndtri(1.0 - alpha / 2.0))
    return mean, mean - z * se, mean + z * se, se, groups


def _result(name: str, terms: np.ndarray, clusters: np.ndarray | None, alpha: float | None, value: float | None = None) -> OpeEstimate:
    mean, lower, upper, se, groups = clustered_mean(terms, clusters, alpha)
    if value is not None:  # a ratio estimator: the interval of its linearisation, around its own value
        lower, upper, mean = value + (lower - mean), value + (upper - mean), value
    return OpeEstimate(name, mean, lower, upper, se, len(terms), groups)


def estimate(
    estimator: str,
    rewards: np.ndarray,
    logging: np.ndarray,
    target: np.ndarray,
    *,
    q_logged: np.ndarray | None = None,
    q_target: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    tau: float = DEFAULT_TAU,
    alpha: float | None = None,
) -> OpeEstimate:
    """One estimator's value of the candidate policy from logged decisions (see the module docstring).

    Args:
        estimator: one of `ESTIMATORS`.
        rewards: (n,) logged rewards r_i.
        logging: (n,) the logging policy's probability p_i of each served track, in (0, 1].
        target: (n,) the candidate's probability pi_i of each served track, in [0, 1].
        q_logged: (n,) the reward model's prediction for the served track (DR, Switch-DR).
        q_target: (n,) its prediction for the candidate's choice (DM, DR, Switch-DR).
        clusters: (n,) the listener of each decision, for the interval; None: independent decisions.
        tau: Switch-DR's weight threshold (> 0).
        alpha: the interval's level is 1 - alpha (default from `abtest.config`).

    Example (every decision taken by the candidate with probability 1, logged with 1/2):
        >>> estimate("ips", np.array([1.0, 0.0]), np.array([0.5, 0.5]), np.array([1.0, 1.0])).value
        1.0
    """
    if estimator not in ESTIMATORS:
        raise AbtestError(f"estimator == {estimator!r}, must be one of {', '.join(ESTIMATORS)}")
    r = np.asarray(rewards, dtype=np.float64)
    n = len(r)
    p, pi = _check("logging", logging, n), _check("target", target, n)
    if np.any(p <= 0) or np.any(p > 1):
        raise AbtestError("logging propensities must be in (0, 1]: a decision the logging policy could not take cannot be reweighted")
    if np.any(pi < 0) or np.any(pi > 1):
        raise AbtestError("target probabilities must be in [0, 1]")
    if tau <= 0:
        raise AbtestError(f"tau == {tau}, must be > 0")
    w = pi / p
    if estimator == "ips":
        return _result("ips", w * r, clusters, alpha)
    if estimator == "snips":
        if w.sum() <= 0:
            raise AbtestError("snips: the candidate never takes a logged decision (every weight is 0)")
        value = float((w * r).sum() / w.sum())
        return _result("snips", w * (r - value) / w.mean() + value, clusters, alpha, value)
    if q_target is None:
        raise AbtestError(f"{estimator} needs the reward model's predictions for the candidate (q_target)")
    qpi = _check("q_target", q_target, n)
    if estimator == "dm":
        return _result("dm", qpi, clusters, alpha)
    if q_logged is None:
        raise AbtestError(f"{estimator} needs the reward model's predictions for the logged tracks (q_logged)")
    q = _check("q_logged", q_logged, n)
    kept = w if estimator == "dr" else np.where(w <= tau, w, 0.0)
    return _result(estimator, qpi + kept * (r - q), clusters, alpha)


def per_decision_weights(weights: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """(n,) the product of the weights of steps 1..t of each step's episode (rows ordered by step within episode)."""
    weights = np.asarray(weights, dtype=np.float64)
    episodes = np.asarray(episodes)
    out = np.empty_like(weights)
    starts = np.flatnonzero(np.r_[True, episodes[1:] != episodes[:-1]])
    for start, stop in zip(starts, np.r_[starts[1:], len(weights)], strict=True):
        out[start:stop] = np.cumprod(weights[start:stop])
    return out


def session_estimate(
    estimator: str,
    rewards: np.ndarray,
    logging: np.ndarray,
    target: np.ndarray,
    episodes: np.ndarray,
    steps: np.ndarray,
    clusters: np.ndarray | None = None,
    *,
    baseline: float = 0.0,
    alpha: float | None = None,
) -> OpeEstimate:
    """The candidate's value per session, sum over steps of per-decision-weighted rewards (Precup et al. 2000).

    Args:
        estimator: 'pdis' (mean over sessions of sum_t rho_t r_t) or 'wpdis' (each step's rho_t
            divided by its mean over all sessions, a session that ended before step t counted
            with its final weight).
        rewards, logging, target: (n,) per decision, as in `estimate`.
        episodes: (n,) session id of each decision; rows grouped by session and ordered by step.
        steps: (n,) the step of each decision within its session, 0 first.
        clusters: (n,) the listener of each decision (constant within a session).
        baseline: added to every session's value (e.g. the listener's own first track).
        alpha: the interval's level is 1 - alpha.
    """
    if estimator not in ("pdis", "wpdis"):
        raise AbtestError(f"estimator == {estimator!r}, must be 'pdis' or 'wpdis'")
    r = np.asarray(rewards, dtype=np.float64)
    n = len(r)
    p, pi = _check("logging", logging, n), _check("target", target, n)
    rho = per_decision_weights(pi / p, episodes)
    steps = np.asarray(steps, dtype=np.int64)
    _, session_index = np.unique(np.asarray(episodes), return_inverse=True)
    n_sessions = int(session_index.max()) + 1 if n else 0
    if estimator == "wpdis":
        # The mean weight at step t over all sessions; a session that ended before t has gone to an
        # absorbing state where both policies agree, so it keeps its final weight (Thomas 2015, sec. 3.6).
        horizon = int(steps.max()) + 1
        lengths = np.bincount(session_index, minlength=n_sessions)
        final = np.zeros(n_sessions)
        final[session_index] = rho  # rows are ordered by step, so the last write is the final weight
        ended = np.cumsum(np.bincount(lengths, weights=final, minlength=horizon + 1))[:horizon]
        step_mean = (np.bincount(steps, weights=rho, minlength=horizon) + ended) / n_sessions
        rho = np.divide(rho, step_mean[steps], out=np.zeros_like(rho), where=step_mean[steps] > 0)
    per_session = np.bincount(session_index, weights=rho * r, minlength=n_sessions) + baseline
    session_clusters = None
    if clusters is not None:
        session_clusters = np.zeros(n_sessions, dtype=np.asarray(clusters).dtype)
        session_clusters[session_index] = np.asarray(clusters)
    return _result(estimator, per_session, session_clusters, alpha)


def relative_effect(candidate: OpeEstimate, logging_value: float) -> tuple[float, float, float]:
    """(effect, lower, upper) of the candidate against the logging policy's on-policy value, in %
    of the latter (the logging value's own uncertainty is left out: it is measured on every decision)."""
    if logging_value == 0:
        raise AbtestError("the logging policy's value is 0: no relative effect")
    return tuple(100.0 * (x / logging_value - 1.0) for x in (candidate.value, candidate.lower, candidate.upper))  # type: ignore[return-value]


def fit_reward_model(features: np.ndarray, rewards: np.ndarray, folds: Sequence[np.ndarray] | None = None, ridge: float = 1e-3) -> list[np.ndarray]:
    """Ridge regression coefficients of the reward on `features` ((n, d), a constant column
    included), one per fold of `folds` (boolean masks of the rows to fit on; cross-fitting keeps
    DR's reward model from fitting the very rewards it corrects). One fit on all rows when None."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(rewards, dtype=np.float64)
    masks = [np.ones(len(y), dtype=bool)] if folds is None else list(folds)
    out = []
    for mask in masks:
        xm, ym = x[mask], y[mask]
        out.append(np.linalg.solve(xm.T @ xm + ridge * len(ym) * np.eye(x.shape[1]), xm.T @ ym))
    return out
