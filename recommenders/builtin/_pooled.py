"""Base of the built-ins that pick from pools of released tracks (random, sticky_artist, top_pop).

A subclass says how to order the released tracks into segments (`_build_pool`), which segment
a request draws from (`_segment` / `_segments`) and what to answer when its segment has nothing
left (`_fallback`). The single and the batched forms then share one definition of the answer,
so `recommend_batch(rs)[i] == recommend(rs[i])` holds by construction.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from contracts.catalog import Catalog
from recommenders.base import Recommendation, Recommender, Request, RequestBatch
from recommenders.builtin._params import check_int
from recommenders.builtin._pools import (
    Batch,
    Pool,
    ReleasedPools,
    answers_to_columns,
    batch_columns,
    make_recommendations,
    make_salt,
    pick_many,
    pick_one,
    request_key,
)


class PooledRecommender(Recommender):
    """Picks the r-th unplayed track of a segment of a pool; r comes from the request's key.

    Args:
        catalog: the public catalog.
        seed: mixed into every request's key, so that two treatments with different seeds draw
            differently from the same request.
    """

    columnar = True
    #: Choose among the first `cap` candidates of the segment only (None: all of them).
    cap: int | None = None

    def __init__(self, catalog: Catalog, *, seed: int = 0) -> None:
        super().__init__(catalog)
        if catalog.n_tracks == 0:
            raise ValueError(f"recommender {self.name!r} needs a catalog with at least one track")
        self.seed = check_int("seed", seed)
        self._salt = make_salt(self.name, seed)
        self._pools = ReleasedPools(catalog.release_day, self._build_pool)

    def get_params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    @abstractmethod
    def _build_pool(self, released: np.ndarray) -> Pool:
        """The pool of the tracks in the boolean mask `released`."""

    def _segment(self, request: Request) -> int:
        """The segment `request` draws from, or -1 when it has none (then `_fallback` answers)."""
        return 0

    def _segments(self, batch: Batch) -> np.ndarray:
        """`_segment` for a batch, as an int64 array."""
        return np.zeros(len(batch.tracks), dtype=np.int64)

    @abstractmethod
    def _fallback(self, request: Request, pool: Pool) -> Recommendation:
        """The answer when the request's segment has no unplayed track left."""

    def _fallback_columns(self, batch: RequestBatch, pool: Pool) -> tuple[np.ndarray, np.ndarray]:
        """`_fallback` for a batch, as (tracks, propensities) arrays."""
        answers = [self._fallback(request, pool) for request in batch.requests()]
        return answers_to_columns(answers)

    def _recommend(self, request: Request) -> Recommendation:
        pool = self._pools.for_day(request.day)
        segment = self._segment(request)
        if segment >= 0:
            key = request_key(self._salt, request)
            track, candidates = pick_one(pool, segment, key, chain(request.history, (request.track,)), self.cap)
            if track >= 0:
                return Recommendation(track, 1.0 / candidates)
        return self._fallback(request, pool)

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        if not requests:
            return []
        tracks, propensity = self._recommend_columns(RequestBatch.of(requests))
        return make_recommendations(tracks, propensity)

    def _recommend_columns(self, batch: RequestBatch) -> tuple[np.ndarray, np.ndarray]:
        groups = self._pools.column_groups(batch.days)
        if len(groups) == 1:
            return self._recommend_from(batch, self._pools.for_key(groups[0][0]))
        tracks = np.full(len(batch), -1, dtype=np.int64)
        propensity = np.full(len(batch), np.nan)
        for key, indices in groups:
            assert indices is not None
            tracks[indices], propensity[indices] = self._recommend_from(batch.take(indices), self._pools.for_key(key))
        return tracks, propensity

    def _recommend_from(self, batch: RequestBatch, pool: Pool) -> tuple[np.ndarray, np.ndarray]:
        arrays = batch_columns(batch, self._salt)
        tracks, candidates = pick_many(pool, self._segments(arrays), arrays.keys, arrays.skip_tracks, arrays.skip_owner, self.cap)
        propensity = 1.0 / np.maximum(candidates, 1)
        missing = np.flatnonzero(tracks < 0)
        if len(missing):
            tracks[missing], propensity[missing] = self._fallback_columns(batch.take(missing), pool)
        return tracks, propensity

    def _pick_with_repeats(self, request: Request, pool: Pool) -> Recommendation:
        """Every candidate was played: draw from the whole of segment 0, repeats allowed."""
        track, candidates = pick_one(pool, 0, request_key(self._salt, request), (), self.cap)
        return Recommendation(track, 1.0 / candidates)

    def _pick_with_repeats_columns(self, batch: RequestBatch, pool: Pool) -> tuple[np.ndarray, np.ndarray]:
        arrays = batch_columns(batch, self._salt)
        empty = np.empty(0, dtype=np.int64)
        tracks, candidates = pick_many(pool, np.zeros(len(batch), dtype=np.int64), arrays.keys, empty, empty, self.cap)
        return tracks, 1.0 / candidates
