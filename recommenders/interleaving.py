"""Team-draft interleaving for next-track recommendation: two recommenders share one request.

Team draft (Radlinski, Kurup and Joachims, "How does clickthrough data reflect retrieval
quality?", CIKM 2008) merges two rankings A and B like captains picking teams: while both have
tracks left, the team with fewer picks (a fair coin when they have as many) adds its best track
not yet in the merged list, and that track is credited to it. A click on a track is a vote for
its team.

The service answers one next track per request, so only the merged list's first position is
ever shown, and the first position is always the coin-winning team's best track: per request,
`TeamDraftRecommender` asks both recommenders, flips the request's coin, serves the top of the
team-drafted list and credits the team that drafted it (logged as the event's `recommender`).
The listen fraction of that track (the `time` of the session's next event) is the team's credit.
When both recommenders answer the same track the coin does not matter: that request is a tie
(propensity 1, credited to the coin's team but carrying no preference), and analysis
(`abtest.interleaving`) leaves it out. Otherwise the served track had probability 1/2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from contracts.catalog import Catalog
from recommenders.base import Recommendation, Recommender, Request
from recommenders.models.mix import request_uniforms

TEAM_A, TEAM_B = 0, 1


def team_draft(a: Sequence[int], b: Sequence[int], coins: Iterable[bool], length: int | None = None) -> tuple[list[int], list[int]]:
    """Team-draft interleaving of rankings `a` and `b` (Radlinski et al. 2008, Algorithm 2).

    Args:
        a, b: the two rankings, best first.
        coins: one fair coin per round in which both teams have as many picks; True means team A
            picks first in that round. Only as many are consumed as such rounds occur.
        length: the merged list's length at most (default: until either ranking runs out).

    Returns:
        (merged, teams): the interleaved tracks and, per position, the team that drafted it
        (`TEAM_A` or `TEAM_B`).

    Example:
        >>> team_draft([1, 2, 3], [2, 4, 5], [True, False])
        ([1, 2, 4, 3], [0, 1, 1, 0])
    """
    coin = iter(coins)
    merged: list[int] = []
    teams: list[int] = []
    chosen: set[int] = set()
    picks = [0, 0]
    rankings = (list(a), list(b))
    limit = len(rankings[0]) + len(rankings[1]) if length is None else length
    while len(merged) < limit:
        left = [[t for t in ranking if t not in chosen] for ranking in rankings]
        if not left[0] or not left[1]:
            break
        if picks[TEAM_A] == picks[TEAM_B]:
            flip = next(coin, None)
            if flip is None:
                raise ValueError(f"team_draft ran out of coins after {len(merged)} picks; pass one per round")
            team = TEAM_A if flip else TEAM_B
        else:
            team = TEAM_A if picks[TEAM_A] < picks[TEAM_B] else TEAM_B
        track = left[team][0]
        merged.append(track)
        teams.append(team)
        chosen.add(track)
        picks[team] += 1
    return merged, teams


class TeamDraftRecommender(Recommender):
    """Serves the first track of the team-drafted list of two recommenders (see the module docstring).

    Args:
        catalog: the public catalog.
        a, b: (registry name, recommender) of team A and team B.
        salt: changes the request -> coin mapping.
    """

    name = "team_draft"

    def __init__(self, catalog: Catalog, a: tuple[str, Recommender], b: tuple[str, Recommender], salt: int = 0) -> None:
        super().__init__(catalog)
        (self.name_a, self.a), (self.name_b, self.b) = a, b
        self.salt = int(salt)

    def _recommend(self, request: Request) -> Recommendation:
        return self._recommend_batch([request])[0]

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        if not requests:
            return []
        coins = request_uniforms(requests, self.salt) < 0.5
        names = (self.name_a, self.name_b)
        answers = []
        for answer_a, answer_b, coin in zip(self.a.recommend_batch(requests), self.b.recommend_batch(requests), coins, strict=True):
            merged, teams = team_draft([answer_a.track], [answer_b.track], [bool(coin)], length=1)
            inner = answer_a if teams[0] == TEAM_A else answer_b
            share = 1.0 if answer_a.track == answer_b.track else 0.5
            propensity = None if inner.propensity is None else share * float(inner.propensity)
            answers.append(Recommendation(int(merged[0]), propensity, served_by=names[teams[0]]))
        return answers
