"""Offline ranking metrics on hand-written cases, each expectation computed by hand.

Written against the mutants a mutation run of `recommenders/metrics.py` left alive: metrics that
ignore `k`, an MRR that credits a case without a hit, and input checks that no longer refuse.
"""

from __future__ import annotations

import math

import pytest

from recommenders.metrics import hit_rate, mrr, ndcg, recall

# Two cases: the first has its relevant ids 7 and 9 at ranks 2 and 4; the second has 5 at rank 1.
RANKED = [[1, 7, 3, 9, 4], [5, 2, 8, 6, 0]]
TRUTH = [{7, 9}, 5]


def test_hit_rate_counts_a_case_only_when_a_relevant_id_is_in_the_first_k() -> None:
    assert hit_rate(RANKED, TRUTH, k=1) == 0.5  # only the second case hits at rank 1
    assert hit_rate(RANKED, TRUTH, k=2) == 1.0


def test_mrr_uses_the_first_relevant_rank_within_k_and_zero_without_one() -> None:
    assert mrr(RANKED, TRUTH) == pytest.approx((1 / 2 + 1 / 1) / 2)
    assert mrr(RANKED, TRUTH, k=1) == pytest.approx((0.0 + 1.0) / 2)  # the first case has no hit in the top 1
    assert mrr([[1, 2, 3]], [9]) == 0.0


def test_recall_is_the_share_of_each_cases_relevant_ids_in_the_first_k() -> None:
    assert recall(RANKED, TRUTH, k=2) == pytest.approx((1 / 2 + 1 / 1) / 2)
    assert recall(RANKED, TRUTH, k=4) == pytest.approx((2 / 2 + 1 / 1) / 2)
    assert recall(RANKED, TRUTH, k=1) == pytest.approx((0 / 2 + 1 / 1) / 2)


def test_ndcg_discounts_by_rank_and_normalises_by_the_ideal_ranking() -> None:
    first_k4 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 / math.log2(2) + 1 / math.log2(3))
    assert ndcg(RANKED, TRUTH, k=4) == pytest.approx((first_k4 + 1.0) / 2)
    first_k2 = (1 / math.log2(3)) / (1 / math.log2(2) + 1 / math.log2(3))
    assert ndcg(RANKED, TRUTH, k=2) == pytest.approx((first_k2 + 1.0) / 2)
    assert ndcg(RANKED, TRUTH, k=1) == pytest.approx((0.0 + 1.0) / 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: recall(RANKED, TRUTH, k=0), "k == 0, must be > 0"),
        (lambda: mrr(RANKED, [5]), "2 recommendation lists but 1 ground-truth entries"),
        (lambda: hit_rate([], [], k=1), "no cases to evaluate"),
        (lambda: ndcg([[1, 2]], [set()], k=2), "case 0 has no relevant item"),
    ],
)
def test_bad_input_is_refused_with_a_message(call: object, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        call()  # type: ignore[operator]
    assert str(raised.value) == message  # the whole message: a search would accept it wrapped in other text
