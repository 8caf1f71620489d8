"""Group-sequential boundaries against published tables, and the alpha they spend."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from abtest.groupseq import (
    crossing_probabilities,
    obrien_fleming_classical,
    pocock_classical,
    spending,
    spending_boundaries,
)
from tests.abtest.conftest import binomial_band

FIVE = [1.0, 2.0, 3.0, 4.0, 5.0]


def test_classical_tests_match_jennison_turnbull() -> None:
    # Jennison & Turnbull (2000), Tables 2.1 and 2.3: K = 5, two-sided alpha = 0.05.
    assert pocock_classical(5, 0.05) == pytest.approx([2.413] * 5, abs=5e-4)
    assert obrien_fleming_classical(5, 0.05) == pytest.approx([4.562, 3.226, 2.634, 2.281, 2.040], abs=5e-4)


def test_lan_demets_boundaries_match_ldbounds() -> None:
    # Reboussin et al. (2000), ldbounds: five equal looks, alpha 0.025 on each side.
    assert spending_boundaries(FIVE, 0.05, "obf") == pytest.approx([4.8769, 3.3570, 2.6803, 2.2898, 2.0310], abs=2e-4)
    assert spending_boundaries(FIVE, 0.05, "pocock") == pytest.approx([2.4380, 2.4268, 2.4102, 2.3966, 2.3860], abs=2e-4)


@pytest.mark.parametrize("kind", ["obf", "pocock"])
def test_boundaries_spend_exactly_what_the_function_allots(kind: str) -> None:
    info = [120.0, 260.0, 390.0, 500.0, 640.0, 700.0, 900.0]  # unequal looks
    c = spending_boundaries(info, 0.05, kind)
    spent = np.cumsum(crossing_probabilities(c, info))
    assert spent == pytest.approx(spending(kind, np.array(info) / info[-1], 0.05), abs=1e-7)
    assert spent[-1] == pytest.approx(0.05, abs=1e-7)


def test_crossing_probabilities_agree_with_scipy_multivariate_normal() -> None:
    info = np.array([1.0, 2.5, 4.0])
    c = spending_boundaries(info, 0.05, "pocock")
    # Z_k are jointly normal with corr(Z_i, Z_j) = sqrt(I_i / I_j) for i <= j.
    corr = np.sqrt(np.minimum.outer(info, info) / np.maximum.outer(info, info))
    inside = stats.multivariate_normal(mean=np.zeros(3), cov=corr).cdf(c, lower_limit=-c, rng=np.random.default_rng(0))
    assert 1 - inside == pytest.approx(crossing_probabilities(c, info).sum(), abs=2e-4)


def test_simulated_random_walks_cross_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(1983)
    runs, looks = 20_000, 14
    z = rng.normal(size=(runs, looks)).cumsum(axis=1) / np.sqrt(np.arange(1, looks + 1))
    c = spending_boundaries(np.arange(1.0, looks + 1), 0.05, "obf")
    share = float((np.abs(z) >= c).any(axis=1).mean())
    lower, upper = binomial_band(0.05, runs)
    assert lower <= share <= upper
    naive = float((np.abs(z) >= stats.norm.ppf(0.975)).any(axis=1).mean())
    assert naive > upper  # fourteen fixed-horizon looks spend far more than 5%


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([1.0, 1.0, 2.0], 0.05, "obf"), "strictly increasing"),
        (([0.0, 1.0], 0.05, "obf"), "positive"),
        (([1.0, 2.0], 1.5, "obf"), "alpha == 1.5"),
        (([1.0, 2.0], 0.05, "haybittle"), "'haybittle' unknown"),
    ],
)
def test_bad_input_is_named(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spending_boundaries(*args)
