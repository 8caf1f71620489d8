"""`i2i`: stored per-track lists, anchored on the tracks the listener liked in this session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.catalog import Catalog
from recommenders.base import Request
from recommenders.builtin._lists import RankedLists, co_listening
from recommenders.builtin._params import check_float, check_int
from recommenders.builtin._stored import StoredListsRecommender
from recommenders.dataset import Dataset

NEIGHBOURS_FILE = "neighbours.parquet"
ANCHOR = "anchor"  # the key column of the neighbours table


class I2IRecommender(StoredListsRecommender):
    """The best unplayed neighbour of the latest track the listener liked in this session.

    Anchors are the session's tracks listened at least `like_threshold`, most recent first
    (the course's client sends `time` 1.0 with a session's first track, so it counts as liked):
    a skipped track never anchors, so after a few skips the answer still follows the last liked
    track rather than the last one played. Up to `anchors` anchors are tried; when none has an
    unplayed, released neighbour (or nothing was liked) the `fallback` answers.

    Artifact directory: `manifest.json` and `neighbours.parquet` with integer columns `anchor`,
    `rank` (0 = best) and `track` (the neighbour), and an optional float `score`. Write one
    with `I2IRecommender.from_lists(catalog, {anchor: [tracks]}).save(DIR)`, or with
    `fit(events).save(DIR)`: cosine similarity of tracks by the sessions that liked both
    (see `recommenders.builtin._lists.co_listening`), the `neighbours` best per track. A
    directory holding only `neighbours.jsonl` (`{"track": t, "tracks": [...]}` per line, as the
    course writes track-to-tracks lists) loads too.

    Args:
        catalog: the public catalog.
        neighbours: similar tracks kept per track (fit).
        like_threshold: the fraction listened that makes a track an anchor (fit and serve).
        anchors: how many liked tracks of the session to try, most recent first.
        fallback: "random" (default), "top_pop" or "sticky_artist".
        seed: passed to the fallback.
    """

    name = "i2i"
    default_fallback = "random"
    jsonl_file = "neighbours.jsonl"
    jsonl_key = "track"

    def __init__(
        self,
        catalog: Catalog,
        *,
        neighbours: int = 50,
        like_threshold: float = 0.5,
        anchors: int = 3,
        fallback: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(catalog, fallback=fallback, seed=seed)
        self.neighbours = check_int("neighbours", neighbours, minimum=1)
        self.like_threshold = check_float("like_threshold", like_threshold, low=0.0, high=1.0)
        self.anchors = check_int("anchors", anchors, minimum=1)

    def get_params(self) -> dict[str, Any]:
        return {
            "neighbours": self.neighbours,
            "like_threshold": self.like_threshold,
            "anchors": self.anchors,
            **super().get_params(),
        }

    def anchor_tracks(self, request: Request) -> list[int]:
        """The session's liked tracks, most recent first, at most `anchors` of them."""
        history = request.history or (request.track,)
        known_times = len(request.times) == len(history)
        last = len(history) - 1
        found: list[int] = []
        for i in range(last, -1, -1):
            listened = request.times[i] if known_times else (request.time if i == last else 0.0)
            if listened >= self.like_threshold and history[i] not in found:
                found.append(history[i])
                if len(found) == self.anchors:
                    break
        return found

    def _lookup(self, request: Request) -> int:
        anchors = self.anchor_tracks(request)
        if not anchors:
            return -1
        played = {*request.history, request.track}
        day = self._effective_day(request.day)
        for anchor in anchors:
            track = self.lists.first_allowed(anchor, played, self._release_day, day)
            if track >= 0:
                return track
        return -1

    def _fit_lists(self, dataset: Dataset) -> None:
        self.lists = RankedLists.from_csr(co_listening(dataset, self.catalog.n_tracks, self.like_threshold, self.neighbours))

    def _save_lists(self, directory: Path) -> None:
        self.lists.write(directory / NEIGHBOURS_FILE, ANCHOR)

    def _load_lists(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.lists = RankedLists.read(directory, NEIGHBOURS_FILE, ANCHOR, self.catalog.n_tracks)

