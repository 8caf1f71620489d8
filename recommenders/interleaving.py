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

The coin is flipped per request (`unit="request"`, the default) or per session
(`unit="session"`). Per request, the teams alternate at random inside a session, so each team's
credit measures a one-step choice from a state both teams built; a recommender whose advantage
comes over several steps (one that keeps the listener's first artist, say) is diluted by the
other team's steps. Per session, one coin drafts the whole session to one team, so each session is
what that team alone would have served, and a listener's sessions under both teams are paired:
a within-listener (crossover) comparison of the two policies' sessions. The service sees no session
id, so the session coin is hashed from (salt, listener, the session's first track), the track
the listener chose before any recommendation: every request of a session gets the same coin
as long as the service keeps the session's whole history (botify's `max_length` steps). Two
sessions of one listener that start with the same track share a coin; since that track is chosen
before any recommendation, the draft stays independent of what either team serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from contracts.catalog import Catalog
from recommenders.base import Recommendation, Recommender, Request
from recommenders.models.mix import request_uniforms

TEAM_A, TEAM_B = 0, 1
UNITS = ("request", "session")


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


def team_coins(requests: Sequence[Request], unit: str = "request", salt: int = 0) -> np.ndarray:
    """(B,) booleans, True where team A wins the request's coin: a fair coin per request
    (`request_uniforms`), or per session (hashed from the listener and the session's first track,
    `history[0]`, so every request of a session gets the same one)."""
    if unit == "request":
        return request_uniforms(requests, salt) < 0.5
    if unit != "session":
        raise ValueError(f"unit == {unit!r}, must be one of {', '.join(UNITS)}")
    firsts = [r.history[0] if r.history else r.track for r in requests]
    starts = [Request(r.user, first, 1.0, seed=first) for r, first in zip(requests, firsts, strict=True)]
    return request_uniforms(starts, salt) < 0.5


class TeamDraftRecommender(Recommender):
    """Serves the first track of the team-drafted list of two recommenders (see the module docstring).

    Args:
        catalog: the public catalog.
        a, b: (registry name, recommender) of team A and team B.
        salt: changes the request -> coin mapping.
        unit: "request" (a coin per request) or "session" (one coin per session).
    """

    name = "team_draft"

    def __init__(self, catalog: Catalog, a: tuple[str, Recommender], b: tuple[str, Recommender], salt: int = 0, unit: str = "request") -> None:
        if unit not in UNITS:
            raise ValueError(f"interleave unit == {unit!r}, must be one of {', '.join(UNITS)}")
        super().__init__(catalog)
        (self.name_a, self.a), (self.name_b, self.b) = a, b
        self.salt = int(salt)
        self.unit = unit

    def _recommend(self, request: Request) -> Recommendation:
        return self._recommend_batch([request])[0]

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        if not requests:
            return []
        names = (self.name_a, self.name_b)
        answers = []
        drawn = team_coins(requests, self.unit, self.salt)
        for answer_a, answer_b, coin in zip(self.a.recommend_batch(requests), self.b.recommend_batch(requests), drawn, strict=True):
            merged, teams = team_draft([answer_a.track], [answer_b.track], [bool(coin)], length=1)
            inner = answer_a if teams[0] == TEAM_A else answer_b
            share = 1.0 if answer_a.track == answer_b.track else 0.5
            propensity = None if inner.propensity is None else share * float(inner.propensity)
            answers.append(Recommendation(int(merged[0]), propensity, served_by=names[teams[0]]))
        return answers
