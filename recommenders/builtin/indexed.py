"""`indexed`: stored per-user lists, computed offline; unknown users get the fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import scipy.sparse as sp

from contracts.catalog import Catalog
from contracts.columns import Columns
from recommenders.base import Request
from recommenders.builtin._lists import RankedLists, co_listening, top_k_rows
from recommenders.builtin._params import check_float, check_int
from recommenders.builtin._stored import StoredListsRecommender
from recommenders.dataset import Dataset

LISTS_FILE = "lists.parquet"


class IndexedRecommender(StoredListsRecommender):
    """The first track of the user's stored list that the session has not played (and is released).

    The lists come from any offline model. Artifact directory: `manifest.json` and
    `lists.parquet` with integer columns `user`, `rank` (0 = best), `track` and an optional
    float `score`; write one with `IndexedRecommender.from_lists(catalog, {user: [tracks]}).save(DIR)`
    or with `fit(events).save(DIR)`, which computes item-based collaborative filtering from the
    log: a user's score for a track is the sum, over the tracks the user liked
    (`time >= like_threshold`), of their co-listening similarity (`i2i`'s, `neighbours` per
    track) plus 1 for the liked track itself; the best `length` tracks form the list. Users
    without a list (cold users) and exhausted lists get the `fallback` (fitted on the same log).
    A directory holding only `lists.jsonl` (`{"user": u, "tracks": [...]}` per line, what the
    course writes from RecTools' recommendations) loads too; its fallback answers from its prior.

    Args:
        catalog: the public catalog.
        length: tracks per user list (fit).
        neighbours: similar tracks kept per track (fit).
        like_threshold: the fraction listened that counts as a like (fit).
        fallback: "top_pop" (default), "random" or "sticky_artist".
        seed: passed to the fallback.
    """

    name = "indexed"
    default_fallback = "top_pop"

    def __init__(
        self,
        catalog: Catalog,
        *,
        length: int = 100,
        neighbours: int = 50,
        like_threshold: float = 0.5,
        fallback: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(catalog, fallback=fallback, seed=seed)
        self.length = check_int("length", length, minimum=1)
        self.neighbours = check_int("neighbours", neighbours, minimum=1)
        self.like_threshold = check_float("like_threshold", like_threshold, low=0.0, high=1.0)

    def get_params(self) -> dict[str, Any]:
        return {
            "length": self.length,
            "neighbours": self.neighbours,
            "like_threshold": self.like_threshold,
            **super().get_params(),
        }

    def _lookup(self, request: Request) -> int:
        played = {*request.history, request.track}
        return self.lists.first_allowed(request.user, played, self._release_day, self._effective_day(request.day))

    def _fit_lists(self, dataset: Dataset) -> None:
        n_tracks = self.catalog.n_tracks
        similarity = co_listening(dataset, n_tracks, self.like_threshold, self.neighbours) + sp.identity(n_tracks, format="csr")
        users, likes = dataset.like_matrix(n_tracks, self.like_threshold)
        indptr, tracks, scores = top_k_rows(sp.csr_matrix(likes @ similarity), self.length)
        self.lists = RankedLists.from_csr(sp.csr_matrix((scores, tracks, indptr), shape=likes.shape), keys=users)

    def _save_lists(self, directory: Path) -> None:
        self.lists.write(directory / LISTS_FILE, Columns.USER)

    def _load_lists(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.lists = RankedLists.read(directory, LISTS_FILE, Columns.USER, self.catalog.n_tracks)
