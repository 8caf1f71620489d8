"""Macro AP, Recall@K and F2 against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, fbeta_score

from recommenders.evaluation.content import f2_scores, frequency_baseline, macro_average_precision, recall_at_k


def test_macro_ap_matches_a_hand_computed_value() -> None:
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.6], [0.1, 0.2]])
    # tag 0: ranking 0.9(+) 0.8(-) 0.3(+) 0.1(-): AP = (1/1 + 2/3) / 2 = 5/6
    # tag 1: ranking 0.7(+) 0.6(+) ...: AP = 1
    result = macro_average_precision(truth, scores)
    assert result.macro_ap == pytest.approx((5 / 6 + 1) / 2)
    assert (result.n_tags, result.n_tracks) == (2, 4)


def test_macro_ap_matches_sklearn_and_skips_tags_without_positives() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random((60, 12)) < 0.2
    truth[:, 5] = False  # no positive: AP undefined, left out
    scores = rng.random((60, 12))
    result = macro_average_precision(truth, scores)
    present = truth.any(axis=0)
    expected = np.mean([average_precision_score(truth[:, j], scores[:, j]) for j in np.flatnonzero(present)])
    assert result.macro_ap == pytest.approx(expected)
    assert result.n_tags == int(present.sum())


def test_macro_ap_rejects_mismatched_shapes_and_empty_truth() -> None:
    with pytest.raises(ValueError, match="shape"):
        macro_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no tag has a positive"):
        macro_average_precision(np.zeros((3, 2)), np.zeros((3, 2)))


def test_frequency_baseline_gives_every_track_the_training_frequency() -> None:
    train = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [1, 1, 0]])
    np.testing.assert_allclose(frequency_baseline(train, 2), [[0.75, 0.25, 0.5]] * 2)


def test_recall_at_k_by_hand() -> None:
    ranked = np.array([[5, 3, 9, 1], [2, 4, 6, 8]])
    relevant = [np.array([3, 1]), np.array([7])]
    assert recall_at_k(ranked, relevant, 2) == pytest.approx((0.5 + 0.0) / 2)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx((1.0 + 0.0) / 2)
    with pytest.raises(ValueError, match="k == 0"):
        recall_at_k(ranked, relevant, 0)


def test_f2_matches_sklearn_per_query_and_by_hand() -> None:
    selected = [np.array([1, 2, 3, 4]), np.array([7]), np.array([], dtype=np.int64)]
    relevant = [np.array([2, 4, 5]), np.array([8]), np.array([1])]
    # query 0: P = 2/4, R = 2/3, F2 = 5 P R / (4 P + R) = (5/3) / (2 + 2/3) = 0.625
    result = f2_scores(selected, relevant)
    universe = np.arange(10)
    expected = []
    for chosen, truth in zip(selected, relevant, strict=True):
        y_true, y_pred = np.isin(universe, truth), np.isin(universe, chosen)
        expected.append(fbeta_score(y_true, y_pred, beta=2, zero_division=0.0))
    assert expected[0] == pytest.approx(0.625)
    assert result.f2 == pytest.approx(np.mean(expected))
    assert result.precision == pytest.approx((0.5 + 0 + 0) / 3)
    assert result.recall == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert result.selected == pytest.approx(5 / 3)
