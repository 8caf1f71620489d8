"""`cold_mix`: a behaviour recommender that hands a share of its requests to a cold-start one.

The cold-start experiment's treatments: most requests are answered by the `base` recommender
(e.g. a trained `dssm`), and a `share` of them by the `cold` recommender (e.g. `content` or
`tags` with `new_only: true`, which recommends tracks released after day 0 and so never
played before). Which requests go where is a pure function of the request's seed, user and
session length, so the same request always gets the same answer. The propensity is the
inner recommender's times the probability of the branch taken.

Example treatment in `config/experiments.yml`::

    recommender: cold_mix
    params:
      base: dssm
      base_artifact: data/artifacts/dssm
      cold: content
      cold_artifact: data/artifacts/content
      cold_params: {new_only: true}
      share: 0.2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from contracts.catalog import Catalog
from contracts.config import Strict
from recommenders import registry
from recommenders.base import Recommendation, Recommender, Request
from recommenders.models.config import serving_params


class MixParams(Strict):
    """Parameters of `cold_mix`."""

    base: str  # registry name of the behaviour recommender
    base_artifact: str | None = None
    base_params: dict[str, Any] = Field(default_factory=dict)
    cold: str  # registry name of the cold-start recommender
    cold_artifact: str | None = None
    cold_params: dict[str, Any] = Field(default_factory=dict)
    share: float = Field(0.2, ge=0.0, le=1.0)  # probability that a request goes to `cold`
    salt: int = Field(0, ge=0)  # changes the request -> branch draw


_U64 = 2**64 - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic): a well-mixed 64-bit hash."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def request_uniforms(requests: Sequence[Request], salt: int = 0) -> np.ndarray:
    """(B,) uniform draws in [0, 1), one per request, hashed from (salt, seed, user, session
    length): a request's draw never depends on its batch."""
    def column(values: list[int]) -> np.ndarray:
        return np.array([v & _U64 for v in values], dtype=np.uint64)

    x = _splitmix(np.full(len(requests), salt & _U64, dtype=np.uint64) ^ column([r.seed for r in requests]))
    x = _splitmix(x ^ column([r.user for r in requests]))
    x = _splitmix(x ^ column([len(r.history) for r in requests]))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def cold_mask(requests: Sequence[Request], share: float, salt: int = 0) -> np.ndarray:
    """Which requests the cold-start recommender answers: a uniform draw below `share` per request
    (`request_uniforms`), so a request's branch never depends on its batch."""
    return request_uniforms(requests, salt) < share


class ColdMixRecommender(Recommender):
    """`base` for most requests, `cold` for a `share` of them (see the module docstring)."""

    name = "cold_mix"

    def __init__(self, catalog: Catalog, **params: Any) -> None:
        self._params = serving_params(MixParams, params, self.name)
        super().__init__(catalog)
        p = self._params
        self.base = registry.make(p.base, catalog, p.base_params, p.base_artifact)
        self.cold = registry.make(p.cold, catalog, p.cold_params, p.cold_artifact)

    def get_params(self) -> dict[str, Any]:
        return self._params.model_dump()

    def _recommend(self, request: Request) -> Recommendation:
        return self._recommend_batch([request])[0]

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        share, salt = self._params.share, self._params.salt
        cold = cold_mask(requests, share, salt)
        answers: list[Recommendation | None] = [None] * len(requests)
        for mask, inner, weight in ((cold, self.cold, share), (~cold, self.base, 1.0 - share)):
            index = np.flatnonzero(mask)
            if not len(index):
                continue
            for position, answer in zip(index, inner.recommend_batch([requests[int(i)] for i in index]), strict=True):
                propensity = None if answer.propensity is None else answer.propensity * weight
                answers[position] = Recommendation(answer.track, propensity)
        return answers  # type: ignore[return-value]
