"""Team-draft interleaving (Radlinski et al. 2008) with known rankings and fixed coins, per request and per session."""

from __future__ import annotations

import math

import pytest

from contracts.catalog import Catalog
from recommenders.base import Recommendation, Recommender, Request
from recommenders.interleaving import TEAM_A, TEAM_B, TeamDraftRecommender, team_coins, team_draft

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


class Fixed(Recommender):
    """Always answers `track` (deterministic: propensity 1)."""

    def __init__(self, catalog: Catalog, track: int) -> None:
        super().__init__(catalog)
        self.track = track

    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(self.track, 1.0)


def session_requests(user: int, first: int, steps: int) -> list[Request]:
    """The requests of one session that starts with `first`, each with its own request seed."""
    history = [first] + [first + 1 + k for k in range(steps - 1)]
    return [Request(user, history[k], 0.5, tuple(history[: k + 1]), (0.5,) * (k + 1), seed=1_000 * user + k) for k in range(steps)]


def test_a_session_coin_is_the_same_for_every_request_of_the_session() -> None:
    sessions = [session_requests(user, first, 6) for user in range(40) for first in (100, 200, 300)]

    per_session = [team_coins(requests, "session") for requests in sessions]
    per_request = [team_coins(requests, "request") for requests in sessions]

    assert all(coins.all() or not coins.any() for coins in per_session)
    # Per request the coins vary inside sessions: with 120 sessions of 6 fair coins, a constant one
    # is rare (2 / 64 each); expect about 4 and far fewer than half.
    constant = sum(bool(coins.all() or not coins.any()) for coins in per_request)
    assert constant < len(sessions) / 2
    wins = sum(bool(coins[0]) for coins in per_session)
    low, high = binomial_band(0.5, len(sessions))
    assert low <= wins <= high


def test_session_interleaving_serves_a_whole_session_from_the_coins_team(small_catalog: Catalog) -> None:
    teams = TeamDraftRecommender(small_catalog, ("a", Fixed(small_catalog, 7)), ("b", Fixed(small_catalog, 9)), unit="session")
    requests = session_requests(3, 100, 5)

    answers = teams.recommend_batch(requests)

    team = "a" if team_coins(requests[:1], "session")[0] else "b"
    assert [a.served_by for a in answers] == [team] * 5
    assert [a.track for a in answers] == [{"a": 7, "b": 9}[team]] * 5
    assert [a.propensity for a in answers] == [0.5] * 5


def test_identical_answers_are_a_tie_with_propensity_one(small_catalog: Catalog) -> None:
    teams = TeamDraftRecommender(small_catalog, ("a", Fixed(small_catalog, 7)), ("b", Fixed(small_catalog, 7)), unit="session")

    answers = teams.recommend_batch(session_requests(3, 100, 3))

    assert [(a.track, a.propensity) for a in answers] == [(7, 1.0)] * 3


def test_an_unknown_unit_is_an_error(small_catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="must be one of request, session"):
        TeamDraftRecommender(small_catalog, ("a", Fixed(small_catalog, 7)), ("b", Fixed(small_catalog, 9)), unit="day")


def binomial_band(p: float, n: int) -> tuple[float, float]:
    """Count of successes within 4.5 binomial standard deviations of n p (a false alarm about once in 150,000 runs)."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - 4.5 * sd, n * p + 4.5 * sd
