"""The recommender plugin contract: one request in, one next track out.

A recommender answers "what next?" for a listener in the middle of a session. The service
builds a `Request` per HTTP call and asks `recommend`; a simulator with many sessions in flight
may call `recommend_batch`, which must answer exactly as `recommend` would, request by request.
Recommenders that learn from the log implement `fit`, `save` and `load`: a `Fittable` answers
from a prior until it has learned, a `Trainable` only after.

Track and user ids here are the external ids of the HTTP API and the event log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Self

from contracts.catalog import Catalog


class ArtifactError(ValueError):
    """An artifact directory that is missing a file, corrupt, of another recommender or format
    version, or trained on another world; the message is one line naming the file."""


def world_record(catalog: Catalog) -> dict[str, Any]:
    """What an artifact records of the world it was trained on: fingerprint, directory and tracks."""
    return {"fingerprint": catalog.fingerprint, "path": str(catalog.path), "tracks": catalog.n_tracks}


def check_world(recorded: Any, catalog: Catalog, artifact: Path) -> None:
    """Refuse an artifact whose `world_record` names another world than `catalog`'s.

    Its track ids would mean other tracks: served, it would answer wrong tracks or fail on the
    first track it does not know. An artifact that records no world (written before the record
    existed, or by hand) is accepted; the recommender's own size checks still apply.
    """
    if recorded is None:
        return
    if not isinstance(recorded, dict) or not isinstance(recorded.get("fingerprint"), str):
        raise ArtifactError(f"{artifact}: the world record must be a mapping with a 'fingerprint', got {recorded!r}")
    if recorded["fingerprint"] != catalog.fingerprint:
        raise ArtifactError(
            f"artifact {artifact} was trained on world {recorded.get('path', '?')} (fingerprint {recorded['fingerprint']}, "
            f"{recorded.get('tracks', '?')} tracks), not on the world it is loaded into, {catalog.path} (fingerprint "
            f"{catalog.fingerprint}, {catalog.n_tracks} tracks); retrain it on this world"
        )


class NotFittedError(RuntimeError):
    """A `Trainable` was asked to recommend, or a `Fittable` to save, before `fit` or `load`."""

    def __init__(self, name: str) -> None:
        super().__init__(f"recommender {name!r} is not fitted: call fit(...) or load(...) first")


@dataclass(frozen=True, slots=True)
class Request:
    """One "what next?" question.

    Attributes:
        user: the listener's id.
        track: the track just played.
        time: the fraction of `track` listened, in [0, 1].
        history: the tracks of this session so far, oldest first, ending with `track`.
        times: the fractions listened for `history`, same length.
        seed: a per-request seed for stochastic recommenders (deterministic under a fixed seed).
        day: the simulated day of the request, when the caller knows it: tracks whose catalog
            `release_day` is later are not released yet and are never recommended. None means
            every track of the catalog counts as released.
    """

    user: int
    track: int
    time: float
    history: tuple[int, ...] = field(default=())
    times: tuple[float, ...] = field(default=())
    seed: int = 0
    day: int | None = None


class Recommendation(NamedTuple):
    """An answer: the next track and the probability with which it was chosen.

    `propensity` is 1.0 for a deterministic choice and None only when a recommender cannot say.
    An exploring policy (`recommenders.exploration`) also says what it would have served without
    exploring (`greedy`, logged in the event's `greedy` column), and an answer drawn from one of
    several inner recommenders (an interleaving's team) may name it (`served_by`, logged as the
    event's `recommender`). Plain recommenders leave both None.
    """

    track: int
    propensity: float | None = None
    greedy: int | None = None
    served_by: str | None = None


class Recommender(ABC):
    """Base class of every recommender plugin.

    Subclasses set `name` and implement `_recommend` (and, where speed matters, a vectorised
    `_recommend_batch`); the service and the simulator call the public `recommend` /
    `recommend_batch`. Construction gets the public catalog and the treatment's parameters (a
    plain mapping from `config/experiments.yml`); unknown parameters should raise `TypeError`
    naming them and bad values `ValueError`, which the service reports at start-up.
    `get_params()` returns the parameters back, so that `cls(catalog, **r.get_params())`
    rebuilds an equivalent recommender.
    """

    name: ClassVar[str] = "base"

    def __init__(self, catalog: Catalog, **params: Any) -> None:
        if params:
            raise TypeError(f"recommender {self.name!r} got unknown parameters: {', '.join(sorted(params))}")
        self.catalog = catalog

    def recommend(self, request: Request) -> Recommendation:
        """The next track for `request`; never a track outside the catalog."""
        return self._recommend(request)

    def recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        """Answers for many requests, each exactly what `recommend` would give."""
        return self._recommend_batch(requests)

    def get_params(self) -> dict[str, Any]:
        """The construction parameters, as a plain mapping (empty for a recommender without any)."""
        return {}

    @abstractmethod
    def _recommend(self, request: Request) -> Recommendation:
        """Subclasses answer one request here."""

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        """Answers many requests; override with a vectorised form where speed matters."""
        return [self._recommend(request) for request in requests]


class Fittable(Recommender):
    """A recommender that can learn from the event log and keep what it learned in a directory.

    Subclasses implement `_fit`, `_save` and `_load`; the public `fit`, `save` and `load` check
    the lifecycle around them (`save` before `fit` or `load` raises `NotFittedError`, `load`
    of a missing directory `FileNotFoundError`) and set `fitted`. A `Fittable` answers before
    it is fitted too, from a prior (`top_pop` ranks by the catalog's popularity until it has
    seen a log), so an artifact is optional: `registry.make` loads one when given.
    `recommenders train` fits any `Fittable`.
    """

    requires_fit: ClassVar[bool] = False  # True: no answers before `fit` or `load` (see `Trainable`)
    config_class: ClassVar[type | None] = None  # the training config `fit(events, config=...)` takes, if any
    fitted: bool = False

    def fit(self, events: Any, **options: Any) -> Self:
        """Learn from `events` (the event log as a pandas DataFrame with the log's columns)."""
        self._fit(events, **options)
        self.fitted = True
        return self

    def save(self, directory: str | Path) -> Path:
        """Write the artifacts to `directory` (created if missing); return it."""
        if not self.fitted:
            raise NotFittedError(self.name)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save(directory)
        return directory

    def load(self, directory: str | Path) -> Self:
        """Read artifacts written by `save`; the recommender then serves what it learned.

        Raises `ArtifactError` (one line naming the directory) when the files do not fit this
        recommender on this catalog, including when it cannot answer two probe requests with them.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"artifact directory {directory} for recommender {self.name!r} does not exist")
        where = f"artifact {directory} does not fit recommender {self.name!r} on this world"
        try:
            self._load(directory)
        except ArtifactError:
            raise
        except (LookupError, ValueError, TypeError, ArithmeticError) as error:
            raise ArtifactError(f"{where}: {_describe(error)}") from None
        self.fitted = True
        # Arrays of consistent names but wrong sizes load silently and fail on the first request
        # they meet; asking a few here turns that 500 into an error at start-up.
        probe = _probe_requests(self.catalog)
        try:
            self.recommend_batch(probe)
            self.recommend(probe[0])
        except Exception as error:  # whatever it is, a real request would meet it too
            self.fitted = False
            raise ArtifactError(f"{where}: a probe request fails: {_describe(error)}") from None
        return self

    @abstractmethod
    def _fit(self, events: Any, **options: Any) -> None:
        """Subclasses learn from `events` here (a DataFrame of the log, or a `Dataset`); `options` are `fit`'s."""

    @abstractmethod
    def _save(self, directory: Path) -> None:
        """Subclasses write what they learned into the existing `directory`, in plain formats (never pickle)."""

    @abstractmethod
    def _load(self, directory: Path) -> None:
        """Subclasses read back what `_save` wrote into `directory`."""


def _probe_requests(catalog: Catalog) -> list[Request]:
    """Requests that touch the ends of the catalog and of the id space: the first, middle and last
    tracks in a session's history, for user 0 and for an id no model has seen."""
    n = catalog.n_tracks
    history = tuple(dict.fromkeys((0, n // 2, n - 1)))
    times = tuple(1.0 if i == 0 else 0.5 for i in range(len(history)))
    return [Request(user=user, track=history[-1], time=times[-1], history=history, times=times) for user in (0, 2**62)]


def _describe(error: BaseException) -> str:
    """One line for a load error: a missing key is named as such, anything else by its message."""
    if isinstance(error, KeyError):
        return f"it lacks {error.args[0]!r}"
    return " ".join(str(error).split()) or type(error).__name__


class Trainable(Fittable):
    """A recommender that learns from the event log and cannot answer before it has.

    The lifecycle of `Fittable`; `recommend` and `recommend_batch` raise `NotFittedError`
    until `fit` or `load`, so serving one needs an artifact.
    """

    requires_fit: ClassVar[bool] = True

    def recommend(self, request: Request) -> Recommendation:
        if not self.fitted:
            raise NotFittedError(self.name)
        return self._recommend(request)

    def recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        if not self.fitted:
            raise NotFittedError(self.name)
        return self._recommend_batch(requests)
