"""The dynamic tag threshold and the margin-based neighbour selection, on hand-written rows."""

from __future__ import annotations

import numpy as np
import pytest

from recommenders.models.selection import DEFAULT_THRESHOLDS, assign_tags, check_thresholds, margin_select


def test_threshold_steps_down_until_a_row_has_a_tag() -> None:
    probabilities = np.array(
        [
            [0.90, 0.60, 0.10],  # decided at 0.55: two tags
            [0.52, 0.51, 0.10],  # first reaches 0.50: both at or above 0.50
            [0.28, 0.21, 0.26],  # the best first reaches 0.25: 0.28 and 0.26 pass it
        ]
    )
    assigned = assign_tags(probabilities)
    expected = np.array([[True, True, False], [True, True, False], [True, False, True]])
    np.testing.assert_array_equal(assigned, expected)


def test_all_probabilities_low_fall_back_to_the_best_tag() -> None:
    probabilities = np.array([[0.05, 0.19, 0.10], [0.0, 0.0, 0.0]])
    assigned = assign_tags(probabilities)
    np.testing.assert_array_equal(assigned, [[False, True, False], [True, False, False]])  # all-zero row: lowest index
    assert not assign_tags(probabilities, fallback=False).any()


def test_ties_at_the_deciding_threshold_are_all_assigned() -> None:
    probabilities = np.array([[0.45, 0.45, 0.44, 0.45]])
    np.testing.assert_array_equal(assign_tags(probabilities), [[True, True, False, True]])


def test_a_probability_exactly_on_a_grid_value_passes_it() -> None:
    assigned = assign_tags(np.array([[0.55, 0.549]]))
    np.testing.assert_array_equal(assigned, [[True, False]])


@pytest.mark.parametrize(
    ("grid", "message"),
    [((), "empty"), ((0.5, 0.6), "strictly decreasing"), ((1.5, 0.5), r"\(0, 1\]"), ((0.5, 0.0), r"\(0, 1\]")],
)
def test_bad_threshold_grids_are_named(grid: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_thresholds(grid)


def test_default_grid_is_the_write_ups() -> None:
    assert DEFAULT_THRESHOLDS == (0.55, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2)


def test_margin_select_keeps_candidates_within_the_margin_of_the_best() -> None:
    similarities = np.array([[0.50, 0.90, 0.80, 0.75, 0.76], [-0.2, -0.5, -0.1, -0.3, -0.9]])
    selected = margin_select(similarities, margin=0.16, cap=10)
    # 0.9 * (1 - 0.16) = 0.756: keeps 0.90, 0.80, 0.76 best first
    np.testing.assert_array_equal(selected[0], [1, 2, 4])
    np.testing.assert_array_equal(selected[1], [2])  # negative best: only the best itself
    assert [len(s) for s in margin_select(similarities, margin=0.16, cap=2)] == [2, 1]


@pytest.mark.parametrize(("margin", "cap", "message"), [(1.0, 5, "margin"), (-0.1, 5, "margin"), (0.1, 0, "cap")])
def test_margin_select_rejects_bad_arguments(margin: float, cap: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        margin_select(np.ones((1, 3)), margin=margin, cap=cap)
