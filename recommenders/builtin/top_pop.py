"""`top_pop`: the most listened released track that the session has not played yet."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from contracts.catalog import Catalog
from contracts.columns import Columns
from recommenders.base import Fittable, Recommendation, Request, RequestBatch
from recommenders.builtin._artifacts import ArtifactError, read_manifest, read_table, write_manifest
from recommenders.builtin._params import check_int
from recommenders.builtin._pooled import PooledRecommender
from recommenders.builtin._pools import Pool, ReleasedPools

if TYPE_CHECKING:
    from recommenders.dataset import EventsLike

logger = logging.getLogger(__name__)

SCORES_FILE = "top_pop.parquet"


class TopPopRecommender(PooledRecommender, Fittable):
    """The best-scored released track that the session has not played yet.

    Scores come from the event log once fitted (`fit(events)` or an artifact written by `save`):
    a track's score is the total fraction listened over its plays, so that skips count little.
    Before any log exists the catalog's `popularity` prior ranks the tracks. Ties go to the
    higher prior, then to the lower id. With `k` > 1 the answer is uniform among the `k` best
    unplayed tracks (propensity 1 / k), which spreads traffic; `k=1` is deterministic.
    When every released track has been played it repeats among the `k` best.

    It works without an artifact (a `Fittable`, not a `Trainable`); `recommenders train top_pop`
    writes one and `registry.make("top_pop", catalog, artifact=DIR)` loads it.

    Args:
        catalog: the public catalog; tracks with `release_day` after `Request.day` are skipped.
        k: how many of the best unplayed tracks to choose among.
        seed: mixed into the draw when `k` > 1.
    """

    name = "top_pop"

    def __init__(self, catalog: Catalog, *, k: int = 1, seed: int = 0) -> None:
        self.k = check_int("k", k, minimum=1)
        self.cap = self.k
        self.scores: np.ndarray | None = None  # None: rank by the catalog's prior
        super().__init__(catalog, seed=seed)

    def get_params(self) -> dict[str, Any]:
        return {"k": self.k, "seed": self.seed}

    def ranking(self) -> np.ndarray:
        """Every track id, best first (int64, shape (n_tracks,))."""
        prior = self.catalog.popularity
        scores = self.scores if self.scores is not None else prior
        return np.lexsort((np.arange(len(prior)), -prior, -scores)).astype(np.int64)

    def _fit(self, events: EventsLike, **options: Any) -> None:
        """Score tracks by total fraction listened in `events` (the log, or a `Dataset`)."""
        if options:
            raise TypeError(f"top_pop.fit got unknown option(s): {', '.join(sorted(options))}")
        from recommenders.dataset import as_interactions  # pandas and scipy: imported when training, not to serve

        interactions = as_interactions(events)
        tracks = interactions[Columns.TRACK].to_numpy(np.int64)
        time = interactions[Columns.TIME].to_numpy(np.float64)
        known = (tracks >= 0) & (tracks < self.catalog.n_tracks)
        if not known.all():
            logger.warning("top_pop: ignoring %d events with tracks outside the catalog", int((~known).sum()))
        self._set_scores(np.bincount(tracks[known], weights=time[known], minlength=self.catalog.n_tracks))

    def _save(self, directory: Path) -> None:
        """Write the fitted scores as `top_pop.parquet` (track, score) plus `manifest.json`."""
        assert self.scores is not None  # `save` checks `fitted`, which only fit and load set
        import pandas as pd

        nonzero = np.flatnonzero(self.scores)
        pd.DataFrame({"track": nonzero, "score": self.scores[nonzero]}).to_parquet(directory / SCORES_FILE, index=False)
        write_manifest(directory, self.name, self.catalog, n_tracks=self.catalog.n_tracks)

    def _load(self, directory: Path) -> None:
        """Read scores written by `save` (tracks missing from the table score 0)."""
        read_manifest(directory, self.name, self.catalog)
        table = read_table(directory, SCORES_FILE, {"track": "int", "score": "float"})
        tracks = table["track"].to_numpy(np.int64)
        if len(tracks) and (tracks.min() < 0 or tracks.max() >= self.catalog.n_tracks):
            raise ArtifactError(f"{directory / SCORES_FILE}: track ids must lie in 0..{self.catalog.n_tracks - 1} (another world's artifact?)")
        scores = np.zeros(self.catalog.n_tracks)
        np.add.at(scores, tracks, table["score"].to_numpy(np.float64))
        self._set_scores(scores)

    def _set_scores(self, scores: np.ndarray) -> None:
        self.scores = scores
        self._pools = ReleasedPools(self.catalog.release_day, self._build_pool)

    def _build_pool(self, released: np.ndarray) -> Pool:
        ranking = self.ranking()
        order = ranking[released[ranking]]
        return Pool(order, np.array([0, len(order)]), self.catalog.n_tracks)

    def _fallback(self, request: Request, pool: Pool) -> Recommendation:
        return self._pick_with_repeats(request, pool)

    def _fallback_columns(self, batch: RequestBatch, pool: Pool) -> tuple[np.ndarray, np.ndarray]:
        return self._pick_with_repeats_columns(batch, pool)
