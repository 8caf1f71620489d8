"""Exploration policies: any recommender served stochastically, with the exact probability of each answer.

Off-policy evaluation (`abtest.ope`) reweights logged decisions by how likely another policy was
to take them, which needs logs of a policy that takes more than one action per situation and
says with which probability. Two wrappers make one of any recommender:

- `SoftmaxExplorer`: draws among the base recommender's `candidates` best tracks with
  probability proportional to exp(score / temperature). The base must be a `Ranker` (it scores
  tracks: the learned models); the probabilities are renormalised over those candidates, so a
  track outside them has probability 0.
- `EpsilonExplorer`: serves the base recommender's answer with probability 1 - epsilon and, with
  probability epsilon, the answer of one of the `others` (uniformly chosen). Works on any
  recommender.

Each answer carries its propensity (the probability of the served track under the policy,
summed over every branch that would have served it) and `greedy`, the base's own answer,
which the service logs in the event's `greedy` column. The draw is a pure function of the
request (its seed, user and session length, as `recommenders.models.mix.cold_mask`), so the
same request always gets the same answer and a replay of the policy reproduces the log.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contracts.catalog import Catalog
from recommenders.base import Recommendation, Recommender, Request
from recommenders.models.mix import request_uniforms
from recommenders.models.ranking import Ranker


def softmax_probabilities(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax(scores / temperature) of a (B, C) array, in float64; -inf scores get 0."""
    if temperature <= 0:
        raise ValueError(f"temperature == {temperature}, must be > 0")
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - np.max(z, axis=1, keepdims=True)
    weights = np.exp(z)
    return weights / weights.sum(axis=1, keepdims=True)


def draw(probabilities: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """(B,) column drawn per row of (B, C) `probabilities` by inverse CDF at `uniforms` in [0, 1)."""
    cumulative = np.cumsum(probabilities, axis=1)
    index = (cumulative <= (uniforms * cumulative[:, -1])[:, None]).sum(axis=1)
    return np.minimum(index, probabilities.shape[1] - 1)


class SoftmaxExplorer(Recommender):
    """Softmax exploration over a scoring recommender's top candidates (see the module docstring).

    Args:
        catalog: the public catalog.
        base: a `Ranker` recommender (its `rank` gives the candidates, `score` their scores).
        base_name: its registry name, for messages.
        temperature: the softmax temperature in score units (> 0); small is nearly greedy.
        candidates: how many of the base's best tracks may be drawn (>= 2).
        salt: changes the request -> draw mapping.
    """

    name = "softmax"

    def __init__(self, catalog: Catalog, base: Recommender, base_name: str, temperature: float, candidates: int = 50, salt: int = 0) -> None:
        super().__init__(catalog)
        if not isinstance(base, Ranker):
            raise ValueError(f"softmax exploration needs a recommender with scores, and {base_name!r} has none; use epsilon exploration")
        if temperature <= 0:
            raise ValueError(f"softmax temperature == {temperature}, must be > 0")
        if candidates < 2:
            raise ValueError(f"softmax candidates == {candidates}, must be >= 2")
        self.base, self.base_name = base, base_name
        self.temperature, self.candidates, self.salt = float(temperature), int(candidates), int(salt)

    def probabilities(self, requests: Sequence[Request]) -> tuple[np.ndarray, np.ndarray]:
        """((B, C) candidate tracks, best first, (B, C) their probabilities under this policy)."""
        ranker: Ranker = self.base  # type: ignore[assignment]
        tracks = ranker.rank(requests, self.candidates)
        return tracks, softmax_probabilities(ranker.score(requests, tracks), self.temperature)

    def _recommend(self, request: Request) -> Recommendation:
        return self._recommend_batch([request])[0]

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        if not requests:
            return []
        tracks, probabilities = self.probabilities(requests)
        chosen = draw(probabilities, request_uniforms(requests, self.salt))
        rows = np.arange(len(requests))
        return [
            Recommendation(int(track), float(p), greedy=int(greedy))
            for track, p, greedy in zip(tracks[rows, chosen], probabilities[rows, chosen], tracks[:, 0], strict=True)
        ]


class EpsilonExplorer(Recommender):
    """Epsilon-greedy mixing of a base recommender with others (see the module docstring).

    The propensity of the served track t is (1 - epsilon) p_base [t = base's answer] +
    (epsilon / m) sum_j p_j [t = other j's answer], with p the inner answers' propensities
    (1 for a deterministic recommender). It is exact when the inner recommenders are
    deterministic; a stochastic `other` may also have drawn the served track without this
    request showing it, so there the propensity is a lower bound (by at most epsilon times the
    other's largest probability of one track, e.g. epsilon / tracks for `random`).

    Args:
        catalog: the public catalog.
        base: the recommender whose answer is served with probability 1 - epsilon (logged as `greedy`).
        others: (registry name, recommender) pairs among which an exploring request draws uniformly.
        epsilon: the probability of exploring, in (0, 1].
        salt: changes the request -> draw mapping.
    """

    name = "epsilon"

    def __init__(self, catalog: Catalog, base: Recommender, others: Sequence[tuple[str, Recommender]], epsilon: float, salt: int = 0) -> None:
        super().__init__(catalog)
        if not others:
            raise ValueError("epsilon exploration needs at least one other recommender to mix in")
        if not 0.0 < epsilon <= 1.0:
            raise ValueError(f"epsilon == {epsilon}, must be in (0, 1]")
        self.base, self.others = base, [recommender for _, recommender in others]
        self.epsilon, self.salt = float(epsilon), int(salt)

    def _recommend(self, request: Request) -> Recommendation:
        return self._recommend_batch([request])[0]

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        if not requests:
            return []
        base = self.base.recommend_batch(requests)
        others = [other.recommend_batch(requests) for other in self.others]
        uniforms = request_uniforms(requests, self.salt)
        m, eps = len(self.others), self.epsilon
        answers = []
        for row, (greedy, u) in enumerate(zip(base, uniforms, strict=True)):
            row_others = [answers_j[row] for answers_j in others]
            served = row_others[min(int(u / eps * m), m - 1)] if u < eps else greedy
            branches = [(1.0 - eps, greedy)] + [(eps / m, answer) for answer in row_others]
            matching = [(weight, answer.propensity) for weight, answer in branches if answer.track == served.track]
            propensity: float | None = None
            if all(p is not None for _, p in matching):
                propensity = float(sum(weight * float(p) for weight, p in matching if p is not None))
            answers.append(Recommendation(int(served.track), propensity, greedy=int(greedy.track)))
        return answers
