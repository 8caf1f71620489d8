"""Team-draft interleaving (Radlinski et al. 2008) with known rankings and fixed coins."""

from __future__ import annotations

import pytest

from recommenders.interleaving import TEAM_A, TEAM_B, team_draft

A, B = TEAM_A, TEAM_B


@pytest.mark.parametrize(
    ("a", "b", "coins", "merged", "teams"),
    [
        # A wins the first coin: 1 (A), then B's best unchosen 2 (B); B wins the second: 4 (B), then A's 3.
        ([1, 2, 3], [2, 4, 5], [True, False], [1, 2, 4, 3], [A, B, B, A]),
        # B wins the first coin: 2 (B), then A's best unchosen is 1 (A); A wins the next: 3 (A), and
        # then A has nothing left, which ends the draft (Algorithm 2 runs while both teams have tracks).
        ([1, 2, 3], [2, 4, 5], [False, True], [2, 1, 3], [B, A, A]),
        # Identical rankings: the teams alternate down the list, the coins deciding who leads each round.
        ([7, 8, 9, 10], [7, 8, 9, 10], [True, False], [7, 8, 9, 10], [A, B, B, A]),
        # Disjoint rankings of different lengths: stops when either team has nothing left.
        ([1, 2], [5, 6, 7], [False, False], [5, 1, 6, 2], [B, A, B, A]),
    ],
)
def test_team_draft_gives_the_known_list_and_credits(a: list[int], b: list[int], coins: list[bool], merged: list[int], teams: list[int]) -> None:
    assert team_draft(a, b, coins) == (merged, teams)


def test_the_served_first_track_is_the_coin_winners_best() -> None:
    assert team_draft([3, 1], [9, 3], [True], length=1) == ([3], [A])
    assert team_draft([3, 1], [9, 3], [False], length=1) == ([9], [B])


def test_running_out_of_coins_is_an_error() -> None:
    with pytest.raises(ValueError, match="ran out of coins"):
        team_draft([1, 2, 3], [4, 5, 6], [True])
