"""The recommender plugin contract: one request in, one next track out.

A recommender answers "what next?" for a listener in the middle of a session. The service
builds a `Request` per HTTP call and asks `recommend`; a simulator with many sessions in flight
may call `recommend_batch`, which must answer exactly as `recommend` would, request by request.
A recommender whose batched form works on arrays may also take a `RequestBatch` (the same
requests as columns) through `recommend_columns`, which the service uses to skip building a
`Request` per request.
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

import numpy as np

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


NO_DAY = np.iinfo(np.int64).min  # `RequestBatch.days` where the request's day is not known (None)


@dataclass(frozen=True, slots=True)
class RequestBatch:
    """Many requests as columns: request i is `Request(users[i], tracks[i], times[i], history of i,
    its times, seeds[i], days[i])`, with the histories cut from flat arrays by `offsets`.

    Attributes:
        users: shape (n,), int64 (`of` wraps an id beyond int64 modulo 2**64, as a key does).
        tracks: the track just played, shape (n,), int64.
        times: the fraction of it listened, shape (n,), float64.
        seeds: the requests' seeds, shape (n,), uint64 (a seed is taken modulo 2**64).
        days: the simulated day, shape (n,), int64; `NO_DAY` where it is not known.
        history: every request's history one after another, int64.
        history_times: the fractions listened of `history`, float64.
        offsets: request i's history is `history[offsets[i]:offsets[i + 1]]`, shape (n + 1,), int64.
    """

    users: np.ndarray
    tracks: np.ndarray
    times: np.ndarray
    seeds: np.ndarray
    days: np.ndarray
    history: np.ndarray
    history_times: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def of(cls, requests: Sequence[Request]) -> RequestBatch:
        """The columns of `requests`."""
        n = len(requests)
        lengths = np.fromiter((len(r.history) for r in requests), np.int64, n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(
            users=_wrapped([r.user for r in requests]),
            tracks=_wrapped([r.track for r in requests]),
            times=np.array([r.time for r in requests], dtype=np.float64).reshape(n),
            seeds=np.array([r.seed & 0xFFFF_FFFF_FFFF_FFFF for r in requests], dtype=np.uint64).reshape(n),
            days=np.array([NO_DAY if r.day is None else r.day for r in requests], dtype=np.int64).reshape(n),
            history=np.fromiter((t for r in requests for t in r.history), np.int64, int(offsets[-1])),
            history_times=np.fromiter((t for r in requests for t in _times_of(r)), np.float64, int(offsets[-1])),
            offsets=offsets,
        )

    def take(self, indices: np.ndarray) -> RequestBatch:
        """The requests at `indices` (an int64 array), in that order, as a batch."""
        positions, offsets = segment_positions(self.offsets, indices)
        return RequestBatch(
            self.users[indices], self.tracks[indices], self.times[indices], self.seeds[indices], self.days[indices],
            self.history[positions], self.history_times[positions], offsets,
        )

    def requests(self, indices: Sequence[int] | None = None) -> list[Request]:
        """The requests at `indices` (all by default) as `Request` objects."""
        chosen = range(len(self)) if indices is None else indices
        users, tracks, times, seeds, days = (a.tolist() for a in (self.users, self.tracks, self.times, self.seeds, self.days))
        history, history_times, offsets = self.history.tolist(), self.history_times.tolist(), self.offsets.tolist()
        out = []
        for i in chosen:
            start, stop = offsets[i], offsets[i + 1]
            day = None if days[i] == NO_DAY else days[i]
            out.append(Request(users[i], tracks[i], times[i], tuple(history[start:stop]), tuple(history_times[start:stop]), seeds[i], day))
        return out


def segment_positions(offsets: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the segments `indices` of a flat array cut by `offsets` lie, one after another: (positions
    into the flat array, the offsets of the gathered segments)."""
    starts = offsets[indices]
    lengths = offsets[indices + 1] - starts
    gathered = np.zeros(len(indices) + 1, dtype=np.int64)
    np.cumsum(lengths, out=gathered[1:])
    # position j of the result comes from starts[k] + (j - gathered[k]), k its segment
    return np.arange(int(gathered[-1]), dtype=np.int64) + np.repeat(starts - gathered[:-1], lengths), gathered


def _times_of(request: Request) -> tuple[float, ...]:
    """`request.times`, or NaN per history entry where they are missing (a caller that knows only the tracks)."""
    return request.times if len(request.times) == len(request.history) else (float("nan"),) * len(request.history)


def _wrapped(values: list[int]) -> np.ndarray:
    """`values` as int64, wrapping any beyond int64's range modulo 2**64."""
    try:
        return np.array(values, dtype=np.int64).reshape(len(values))
    except OverflowError:
        return np.array([v & 0xFFFF_FFFF_FFFF_FFFF for v in values], dtype=np.uint64).reshape(len(values)).view(np.int64)


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
    #: True when `_recommend_columns` answers a `RequestBatch` directly (else `recommend_columns`
    #: builds the `Request`s and asks `recommend_batch`).
    columnar: ClassVar[bool] = False

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

    def recommend_columns(self, batch: RequestBatch) -> tuple[np.ndarray, np.ndarray]:
        """`recommend_batch` of the requests in `batch`, as arrays: (tracks int64, propensities
        float64, NaN where None). Only for a `columnar` recommender; the others' answers (which
        may carry `greedy` or `served_by`) are asked through `recommend_batch`."""
        if not self.columnar:
            raise TypeError(f"recommender {self.name!r} has no columnar form; ask recommend_batch(batch.requests())")
        return self._recommend_columns(batch)

    def _recommend_columns(self, batch: RequestBatch) -> tuple[np.ndarray, np.ndarray]:
        """Columnar recommenders answer a batch here."""
        raise NotImplementedError

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

    def recommend_columns(self, batch: RequestBatch) -> tuple[np.ndarray, np.ndarray]:
        if not self.fitted:
            raise NotFittedError(self.name)
        return super().recommend_columns(batch)
