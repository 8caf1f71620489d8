"""Base of the recommenders that serve stored lists (`indexed`, `i2i`): lookup, fallback, artifacts.

A subclass finds the first allowed track in its lists (`_lookup`), builds the lists from the
event log (`_fit_lists`) and reads / writes them (`_save_lists` / `_load_lists`). This base
answers with the `fallback` recommender when the lists have nothing (an unknown user, a session
that liked nothing, every listed track already played), fits that fallback on the same log when
it learns from one (`top_pop`), and keeps it in the artifact's `fallback/` folder.

An artifact directory may also hold only a JSON-lines file of lists (`jsonl_file`, one
`{jsonl_key: id, "tracks": [...]}` per line, as RecTools users and the course write them):
`load` then reads that, checked line by line, and the fallback answers from its prior.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from contracts.catalog import Catalog
from recommenders.base import Fittable, Recommendation, Recommender, Request, Trainable
from recommenders.builtin._artifacts import MANIFEST, ArtifactError, read_manifest, write_manifest
from recommenders.builtin._lists import RankedLists
from recommenders.builtin._params import check_choice, check_int
from recommenders.dataset import Dataset, EventsLike

FALLBACKS = ("random", "top_pop", "sticky_artist")
FALLBACK_DIR = "fallback"


def build_fallback(name: str, catalog: Catalog, seed: int) -> Recommender:
    """One of the pool-based built-ins, by name, to answer when stored lists have nothing."""
    from recommenders.builtin.random import RandomRecommender
    from recommenders.builtin.sticky_artist import StickyArtistRecommender
    from recommenders.builtin.top_pop import TopPopRecommender

    classes: dict[str, type[Recommender]] = {
        "random": RandomRecommender,
        "top_pop": TopPopRecommender,
        "sticky_artist": StickyArtistRecommender,
    }
    return classes[name](catalog, seed=seed)


class StoredListsRecommender(Trainable):
    """Serves the first unplayed, released track of a stored list; else asks its fallback.

    Answers from the lists are deterministic (propensity 1.0); fallback answers carry the
    fallback's propensity.
    """

    default_fallback: ClassVar[str] = "top_pop"
    jsonl_file: ClassVar[str] = "lists.jsonl"  # lists written by other tools, read when there is no manifest
    jsonl_key: ClassVar[str] = "user"  # the id each JSON line's list belongs to

    def __init__(self, catalog: Catalog, *, fallback: str | None = None, seed: int = 0) -> None:
        super().__init__(catalog)
        self.fallback = check_choice("fallback", fallback if fallback is not None else self.default_fallback, FALLBACKS)
        self.seed = check_int("seed", seed)
        self.fallback_recommender = build_fallback(self.fallback, catalog, seed)
        self._release_day: list[int] = catalog.release_day.tolist()
        self._first_day = int(catalog.release_day.min()) if catalog.n_tracks else 0
        self._last_day = int(catalog.release_day.max()) if catalog.n_tracks else 0
        self.lists = RankedLists.from_mapping({})  # filled by fit, load or from_lists

    @classmethod
    def from_lists(cls, catalog: Catalog, lists: Mapping[int, Sequence[int]], **params: Any) -> Self:
        """A ready recommender serving `lists` (its key, a user or an anchor track -> tracks, best
        first); `save` it to deploy."""
        recommender = cls(catalog, **params)
        recommender.lists = RankedLists.from_mapping(lists)
        recommender.fitted = True
        return recommender

    def get_params(self) -> dict[str, Any]:
        return {"fallback": self.fallback, "seed": self.seed}

    def _effective_day(self, day: int | None) -> int | None:
        """None when every track counts as released, else the day to check releases against."""
        if day is None or day >= self._last_day:
            return None
        return max(day, self._first_day)

    @abstractmethod
    def _lookup(self, request: Request) -> int:
        """The track the stored lists give for `request`, or -1 to let the fallback answer."""

    @abstractmethod
    def _fit_lists(self, dataset: Dataset) -> None: ...

    @abstractmethod
    def _save_lists(self, directory: Path) -> None: ...

    @abstractmethod
    def _load_lists(self, directory: Path, manifest: dict[str, Any]) -> None: ...

    def _recommend(self, request: Request) -> Recommendation:
        track = self._lookup(request)
        if track >= 0:
            return Recommendation(track, 1.0)
        return self.fallback_recommender.recommend(request)

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        answers = []
        missing = []
        for i, request in enumerate(requests):
            track = self._lookup(request)
            if track < 0:
                missing.append(i)
            answers.append(Recommendation(track, 1.0))
        if missing:
            fallbacks = self.fallback_recommender.recommend_batch([requests[i] for i in missing])
            for i, answer in zip(missing, fallbacks, strict=True):
                answers[i] = answer
        return answers

    def _fit(self, events: EventsLike, **options: Any) -> None:
        if options:
            raise TypeError(f"{self.name}.fit got unknown options: {', '.join(sorted(options))}")
        dataset = Dataset.from_events(events)
        self._fit_lists(dataset)
        if isinstance(self.fallback_recommender, Fittable):
            self.fallback_recommender.fit(dataset)

    def _save(self, directory: Path) -> None:
        self._save_lists(directory)
        write_manifest(directory, self.name, self.catalog, n_tracks=self.catalog.n_tracks, params=self.get_params())
        if isinstance(self.fallback_recommender, Fittable) and self.fallback_recommender.fitted:
            self.fallback_recommender.save(directory / FALLBACK_DIR)

    def _load(self, directory: Path) -> None:
        if not (directory / MANIFEST).is_file() and (directory / self.jsonl_file).is_file():
            self.lists = RankedLists.read_jsonl(directory / self.jsonl_file, self.jsonl_key, self.catalog.n_tracks)
            return
        manifest = read_manifest(directory, self.name, self.catalog)
        if manifest.get("n_tracks") not in (None, self.catalog.n_tracks):
            raise ArtifactError(
                f"{directory} was trained on a catalog of {manifest['n_tracks']} tracks, this one has {self.catalog.n_tracks}"
            )
        self._load_lists(directory, manifest)
        if isinstance(self.fallback_recommender, Fittable) and (directory / FALLBACK_DIR).is_dir():
            self.fallback_recommender.load(directory / FALLBACK_DIR)
