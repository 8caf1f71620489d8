"""Off-policy estimators against hand-computed numbers and a synthetic bandit with a known value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abtest.errors import AbtestError
from abtest.ope import clustered_mean, estimate, per_decision_weights, session_estimate

# Four logged decisions: the candidate takes the logged track in the first and third
# (weights 1/0.5 = 2 and 1/0.25 = 4), never in the others.
REWARDS = np.array([1.0, 0.0, 0.5, 1.0])
LOGGING = np.array([0.5, 0.5, 0.25, 0.8])
TARGET = np.array([1.0, 0.0, 1.0, 0.0])
Q_LOGGED = np.array([0.6, 0.4, 0.6, 0.4])
Q_TARGET = np.full(4, 0.6)


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        ("ips", (2 * 1.0 + 4 * 0.5) / 4),  # 1.0
        ("snips", (2 * 1.0 + 4 * 0.5) / (2 + 4)),  # 2/3
        ("dm", 0.6),
        ("dr", ((0.6 + 2 * 0.4) + 0.6 + (0.6 + 4 * -0.1) + 0.6) / 4),  # 0.7
        ("switch-dr", ((0.6 + 2 * 0.4) + 0.6 + 0.6 + 0.6) / 4),  # 0.8: the weight 4 is over tau = 3
    ],
)
def test_estimators_give_the_hand_computed_values(estimator: str, expected: float) -> None:
    result = estimate(estimator, REWARDS, LOGGING, TARGET, q_logged=Q_LOGGED, q_target=Q_TARGET, tau=3.0)

    assert result.value == pytest.approx(expected)
    assert result.lower <= result.value <= result.upper


def test_ips_interval_is_the_normal_interval_of_the_weighted_rewards() -> None:
    result = estimate("ips", REWARDS, LOGGING, TARGET)

    # terms 2, 0, 2, 0: deviations +-1, variance 4 / 4^2 * 4/3 = 1/3.
    assert result.se == pytest.approx(math.sqrt(1 / 3))
    assert result.upper - result.value == pytest.approx(1.959964 * math.sqrt(1 / 3), rel=1e-6)


def test_clustering_by_listener_sums_deviations_within_a_listener() -> None:
    mean, _, _, se, groups = clustered_mean(np.array([2.0, 0.0, 2.0, 0.0]), np.array([7, 7, 8, 8]))

    # each listener's deviations cancel (+1 - 1): no variance left between listeners.
    assert (mean, se, groups) == (1.0, 0.0, 2)


def test_per_decision_weights_multiply_along_each_session() -> None:
    weights = per_decision_weights(np.array([2.0, 0.5, 3.0, 4.0, 0.0, 5.0]), np.array([1, 1, 1, 2, 2, 2]))

    assert weights.tolist() == [2.0, 1.0, 3.0, 4.0, 0.0, 0.0]


def test_pdis_counts_each_reward_as_far_as_the_candidate_follows() -> None:
    # session 1: weights 2, 2 -> 2 * 0.5 + 4 * 1.0 = 5; session 2: weights 0, 2 -> 0.
    result = session_estimate(
        "pdis", np.array([0.5, 1.0, 1.0, 1.0]), np.full(4, 0.5), np.array([1.0, 1.0, 0.0, 1.0]),
        np.array([1, 1, 2, 2]), np.array([0, 1, 0, 1]), baseline=1.0,
    )

    assert result.value == pytest.approx((5.0 + 1.0 + 0.0 + 1.0) / 2)


def test_wpdis_of_the_logging_policy_itself_is_the_plain_mean() -> None:
    rewards = np.array([0.5, 1.0, 0.2, 0.9, 0.1])
    result = session_estimate("wpdis", rewards, np.full(5, 0.4), np.full(5, 0.4), np.array([1, 1, 2, 3, 3]), np.array([0, 1, 0, 0, 1]))

    assert result.value == pytest.approx((1.5 + 0.2 + 1.0) / 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"estimator": "ipw"}, "must be one of"),
        ({"logging": np.array([0.0, 0.5, 0.5, 0.5])}, r"logging propensities must be in \(0, 1\]"),
        ({"target": np.array([1.5, 0.0, 0.0, 0.0])}, r"target probabilities must be in \[0, 1\]"),
        ({"estimator": "dr", "q_target": None}, "needs the reward model"),
        ({"logging": np.array([0.5, 0.5])}, "must be"),
    ],
)
def test_bad_inputs_name_the_rule(kwargs: dict, message: str) -> None:
    arguments = {"estimator": "ips", "rewards": REWARDS, "logging": LOGGING, "target": TARGET, "q_logged": Q_LOGGED, "q_target": Q_TARGET}
    arguments.update(kwargs)
    estimator = arguments.pop("estimator")
    with pytest.raises(AbtestError, match=message):
        estimate(estimator, **arguments)


# A synthetic bandit: 3 actions, Bernoulli rewards with a per-context mean; the logging policy
# draws actions with probabilities (0.5, 0.3, 0.2) permuted by context, the candidate always
# takes action 0. Its true value is the mean of the contexts' action-0 means, known exactly.
ACTIONS = 3
DECISIONS = 400
REPETITIONS = 300


def bandit(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    context = rng.integers(0, 4, size=DECISIONS)
    means = np.array([[0.8, 0.3, 0.5], [0.2, 0.6, 0.4], [0.5, 0.5, 0.9], [0.7, 0.1, 0.2]])
    probabilities = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.2, 0.5], [0.5, 0.2, 0.3]])[context]
    action = (rng.random(DECISIONS)[:, None] > np.cumsum(probabilities, axis=1)).sum(axis=1)
    reward = (rng.random(DECISIONS) < means[context, action]).astype(float)
    logging = probabilities[np.arange(DECISIONS), action]
    target = (action == 0).astype(float)
    # A deliberately wrong reward model (0.5 everywhere but action 0 of context 0), so DR must lean on the weights.
    model = np.full((4, ACTIONS), 0.5)
    model[0, 0] = 0.75
    return reward, logging, target, model[context, action], model[context, 0]


TRUE_VALUE = (0.8 + 0.2 + 0.5 + 0.7) / 4  # contexts are uniform


@pytest.mark.parametrize("estimator", ["ips", "dr"])
def test_ips_and_dr_are_unbiased_on_a_known_bandit(estimator: str) -> None:
    rng = np.random.default_rng(20260101)
    values, covered = [], 0
    for _ in range(REPETITIONS):
        reward, logging, target, q_logged, q_target = bandit(rng)
        result = estimate(estimator, reward, logging, target, q_logged=q_logged, q_target=q_target)
        values.append(result.value)
        covered += result.lower <= TRUE_VALUE <= result.upper
    values_array = np.asarray(values)
    # The mean of REPETITIONS independent estimates is within 4 of its standard errors of the truth.
    assert abs(values_array.mean() - TRUE_VALUE) < 4 * values_array.std(ddof=1) / math.sqrt(REPETITIONS)
    # 95% intervals cover the truth in a binomial share of the repetitions (4.5 sd band).
    sd = math.sqrt(REPETITIONS * 0.95 * 0.05)
    assert REPETITIONS * 0.95 - 4.5 * sd <= covered <= REPETITIONS * 0.95 + 4.5 * sd
