"""The contract test kit: run it against your recommender before you serve it.

`check_recommender(factory, catalog)` builds your recommender (twice, to see that it is
deterministic), fits it on a synthetic log when it is trainable, and checks what the service
relies on:

1. every answer is a `Recommendation` with a track id of the catalog and a propensity that is
   None or in (0, 1];
2. it never answers a track already played in the session (nor one released after
   `Request.day`) while there is an alternative;
3. it is deterministic: two instances built the same way, and the same instance asked twice,
   give the same answers to the same requests;
4. `recommend_batch(requests)[i] == recommend(requests[i])`, and an empty batch gives `[]`;
5. `cls(catalog, **r.get_params())` rebuilds an equivalent recommender, and an unknown
   parameter raises `TypeError` naming it;
6. for a recommender with artifacts (`fit` / `save` / `load`): a save / load round trip gives
   the same answers, and a `Trainable` refuses to answer before it is fitted;
7. the median time of one `recommend` call is within `latency_budget` (generous by default:
   the figures go in the report, which is where speed is judged, not in a pass / fail).

A failure raises `ContractError` naming the check, the request and what was wrong. The kit
also writes tiny hand-made catalogs (`write_catalog`), reproducible requests
(`make_requests`) and a synthetic event log (`make_events`) for your own tests.

Example (in your plugin's tests)::

    from contracts.catalog import Catalog
    from recommenders.testing import check_recommender, write_catalog

    def test_contract(tmp_path):
        catalog = Catalog(write_catalog(tmp_path / "world", artist=[0, 0, 1, 1, 1, 2]))
        report = check_recommender(lambda: MyRecommender(catalog), catalog)
        assert report.median_latency_s < 0.001
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contracts import catalog as public_format
from contracts.catalog import Catalog
from contracts.columns import MESSAGE_LAST, MESSAGE_NEXT, Columns
from recommenders.answers import ERROR_KINDS, BrokenRule, ContractError, ask, exception_rule, validate
from recommenders.base import NotFittedError, Recommender, Request, Trainable

__all__ = [
    "DEFAULT_LATENCY_BUDGET", "BrokenRule", "ContractError", "ContractReport", "check_recommender",
    "make_events", "make_requests", "write_catalog",
]

DEFAULT_LATENCY_BUDGET = 0.010  # seconds: median of one `recommend` call
UNKNOWN_PARAMETER = "no_such_parameter"
LATENCY_PROBE = 20  # the first calls timed before any other rule, so that a slow plugin fails in seconds
QUICK_REQUESTS = 50  # requests of a quick check (editing loops)
QUICK_EVENTS: dict[str, Any] = {"users": 20, "sessions_per_user": 2}  # the synthetic log a quick check fits on

Progress = Callable[[str, "ContractError | None"], None]


@dataclass
class ContractReport:
    """What `check_recommender` measured; `str(report)` gives one line for a log or a note.

    Attributes:
        name: the recommender's registry name.
        requests: how many requests each check used.
        median_latency_s: median seconds of one `recommend` call.
        p99_latency_s: 99th percentile of the same.
        batch_latency_s: seconds per request of a `recommend_batch` call over all requests (best of 3).
        distinct_tracks: distinct tracks among the answers (0 or 1 hints at a constant answer).
        checks: the checks that passed, in order.
        failures: the broken rules, in order (more than one only with `keep_going`).
    """

    name: str
    requests: int
    median_latency_s: float = float("nan")
    p99_latency_s: float = float("nan")
    batch_latency_s: float = float("nan")
    distinct_tracks: int = 0
    checks: list[str] = field(default_factory=list)
    failures: list[ContractError] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.name}: {len(self.checks)} checks passed over {self.requests} requests; "
            f"recommend median {self.median_latency_s * 1e6:.1f} us, p99 {self.p99_latency_s * 1e6:.1f} us; "
            f"batch {self.batch_latency_s * 1e6:.2f} us/request; {self.distinct_tracks} distinct tracks"
        )


# -- hand-made data ------------------------------------------------------------------------------


def write_catalog(
    directory: str | Path,
    artist: Sequence[int],
    *,
    popularity: Sequence[float] | None = None,
    release_day: Sequence[int] | None = None,
    tags: Sequence[Sequence[int]] | None = None,
    n_tags: int = 4,
    frame_dim: int = 4,
) -> Path:
    """Write a tiny world directory with only the public part, for tests with written-out answers.

    Track i has artist `artist[i]` (artists must be 0..n-1, each with a track). Popularity
    defaults to decreasing with the id (track 0 the most popular); it is normalised to sum 1.
    Every track gets two content frames of zeros. Read it back with `Catalog(directory)`.
    """
    directory = Path(directory)
    public = directory / public_format.PUBLIC_DIR
    public.mkdir(parents=True, exist_ok=True)
    n = len(artist)
    artists = np.asarray(artist, dtype=np.int32)
    if n == 0 or set(artists.tolist()) != set(range(int(artists.max()) + 1)):
        raise ValueError(f"artist == {list(artist)!r}, must use every artist id 0..n-1 at least once")
    prior = np.asarray(popularity if popularity is not None else np.arange(n, 0, -1), dtype=np.float64)
    days = np.asarray(release_day if release_day is not None else np.zeros(n), dtype=np.int32)
    track_tags = [sorted(set(t)) for t in tags] if tags is not None else [[] for _ in range(n)]
    if not (len(prior) == len(days) == len(track_tags) == n):
        raise ValueError("artist, popularity, release_day and tags must have one entry per track")
    pd.DataFrame(
        {
            "track": np.arange(n, dtype=np.int64),
            "artist": artists,
            "title": [f"Track {i}" for i in range(n)],
            "artist_name": [f"Artist {a}" for a in artists],
            "duration": np.full(n, 200.0, dtype=np.float32),
            "popularity": prior / prior.sum(),
            "release_day": days,
        }
    ).to_parquet(public / public_format.CATALOG_FILE, index=False)
    (public / public_format.TAG_NAMES_FILE).write_text(json.dumps([f"tag_{i:03d}" for i in range(n_tags)]))
    indptr = np.concatenate([[0], np.cumsum([len(t) for t in track_tags])]).astype(np.int64)
    indices = np.array([i for t in track_tags for i in t], dtype=np.int32)
    np.save(public / public_format.TAGS_INDPTR_FILE, indptr)
    np.save(public / public_format.TAGS_INDICES_FILE, indices)
    np.save(public / public_format.FRAMES_FILE, np.zeros((2 * n, frame_dim), dtype=np.float32))
    np.save(public / public_format.FRAME_OFFSETS_FILE, np.arange(0, 2 * n + 1, 2, dtype=np.int64))
    return directory


def make_requests(catalog: Catalog, n: int = 200, *, seed: int = 0, max_history: int = 8) -> list[Request]:
    """`n` reproducible requests over `catalog`, of the kinds the service sends.

    A quarter are first requests of a session (history of one track, `time` 1.0, as the course's
    client sends); a quarter follow one artist (so sticky recommenders can exhaust it); the rest
    have random histories with random `time`s. When the catalog releases tracks on later days,
    some requests carry a `day`. Histories never repeat a track and end with `track`.
    """
    rng = np.random.default_rng(seed)
    released = catalog.release_day <= catalog.release_day.min()
    first_day_tracks = np.flatnonzero(released)
    days = np.unique(catalog.release_day)
    requests = []
    for i in range(n):
        kind = i % 4
        day: int | None = None
        if len(days) > 1 and rng.random() < 0.5:
            day = int(rng.choice(days))
        if kind == 0:
            history = [int(rng.choice(first_day_tracks))]
        elif kind == 1:
            artist = int(catalog.artist[rng.choice(first_day_tracks)])
            own = catalog.tracks_of_artist(artist)
            own = own[released[own]]
            length = int(rng.integers(1, min(len(own), max_history) + 1))
            history = rng.choice(own, size=length, replace=False).tolist()
        else:
            length = int(rng.integers(1, min(len(first_day_tracks), max_history) + 1))
            history = rng.choice(first_day_tracks, size=length, replace=False).tolist()
        times = [1.0] if kind == 0 else np.round(rng.random(len(history)), 2).tolist()
        requests.append(
            Request(
                user=int(rng.integers(0, 10_000)),
                track=history[-1],
                time=times[-1],
                history=tuple(history),
                times=tuple(times),
                seed=int(rng.integers(0, 2**62)),
                day=day,
            )
        )
    return requests


def make_events(
    catalog: Catalog,
    *,
    users: int = 60,
    sessions_per_user: int = 3,
    session_length: int = 8,
    seed: int = 0,
    start: str = "2024-01-01",
) -> pd.DataFrame:
    """A synthetic event log with every column of `contracts.columns.Columns`, for fitting in tests.

    Each user has two favourite artists; a session plays mostly their tracks (listened far) and
    some tracks drawn by the popularity prior (listened less), one minute apart. It is no
    simulation of the world's listeners, only a log with structure for a model to find.
    Tracks of the first release day only; vectorised, so a log of 10^6 plays takes a second.
    """
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(catalog.release_day <= catalog.release_day.min())
    pool = pool[np.argsort(catalog.artist[pool], kind="stable")]  # grouped by artist
    artists, first, count = np.unique(catalog.artist[pool], return_index=True, return_counts=True)
    cdf = np.cumsum(catalog.popularity[pool] + 1e-12)
    n_sessions = users * sessions_per_user
    total = n_sessions * session_length
    user = np.repeat(np.arange(users, dtype=np.int64), sessions_per_user * session_length)
    favourites = rng.integers(len(artists), size=(users, 2))
    # A favourite play: one of the user's two artists, then one of that artist's tracks.
    artist = favourites[user, rng.integers(2, size=total)]
    favourite_track = pool[first[artist] + (rng.random(total) * count[artist]).astype(np.int64)]
    popular_track = pool[np.minimum(np.searchsorted(cdf, rng.random(total) * cdf[-1]), len(pool) - 1)]
    is_favourite = rng.random(total) < 0.7
    track = np.where(is_favourite, favourite_track, popular_track)
    listened = np.round(np.where(is_favourite, rng.beta(5, 2, total), rng.beta(2, 5, total)), 2)
    last = (np.arange(total) % session_length) == session_length - 1
    following = np.append(track[1:], 0)
    frame = pd.DataFrame(
        {
            Columns.TS: pd.Timestamp(start) + pd.to_timedelta(np.arange(total), unit="min"),
            Columns.USER: user,
            Columns.SESSION: 1 + np.arange(total) // session_length,
            Columns.MESSAGE: np.where(last, MESSAGE_LAST, MESSAGE_NEXT),
            Columns.TRACK: track,
            Columns.TIME: listened,
            Columns.RECOMMENDATION: pd.array(np.where(last, 0, following), dtype="Int64"),
            Columns.RECOMMENDER: "random",
            Columns.LATENCY: 0.0005,
            Columns.EXPERIMENTS: [{"cold_start": 0}] * total,
            Columns.PROPENSITY: pd.array(np.full(total, 1.0 / len(pool)), dtype="Float64"),
            Columns.ERROR: pd.array([None] * total, dtype="string"),
            Columns.ERROR_MESSAGE: pd.array([None] * total, dtype="string"),
            Columns.GREEDY: pd.array([None] * total, dtype="Int64"),
        }
    )
    frame.loc[last, [Columns.RECOMMENDATION, Columns.PROPENSITY]] = pd.NA
    return frame[list(Columns.ALL)]


# -- the checks ----------------------------------------------------------------------------------

# The rules of one pass over the requests, in the order they are reported.
ANSWER_RULES = ("answers without raising", "answers are Recommendations", "valid track ids", "propensity in (0, 1]")
BEHAVIOUR_RULES = ("released tracks only", "no repeats when avoidable")


def _fail(name: str, check: str, detail: str) -> ContractError:
    return ContractError(f"recommender {name!r} fails '{check}': {detail}")


def _answers(name: str, catalog: Catalog, recommender: Recommender, requests: Sequence[Request]) -> list[tuple[int, float | None]]:
    """Every request asked alone, through the one validator (`recommenders.answers.ask`)."""
    return [ask(recommender, name, catalog.n_tracks, request) for request in requests]


def _batch_answers(name: str, catalog: Catalog, recommender: Recommender, requests: Sequence[Request]) -> list[tuple[int, float | None]]:
    """One `recommend_batch` call over `requests`, each answer validated."""
    try:
        batch = list(recommender.recommend_batch(requests))
    except Exception as error:
        raise exception_rule(name, requests[0], error) from error
    if len(batch) != len(requests):
        raise _fail(name, "batch agrees with single", f"{len(batch)} answers for {len(requests)} requests")
    return [validate(name, catalog.n_tracks, request, answer) for request, answer in zip(requests, batch, strict=True)]


def _check_behaviour(name: str, catalog: Catalog, requests: Sequence[Request], answers: Sequence[tuple[int, float | None]]) -> None:
    first_day = int(catalog.release_day.min())
    for request, (track, _) in zip(requests, answers, strict=True):
        if request.day is not None and request.day >= first_day and catalog.release_day[track] > request.day:
            detail = f"track {track} is released on day {catalog.release_day[track]}, after day {request.day} of {request}"
            raise _fail(name, "released tracks only", detail)
        played = set(request.history) | {request.track}
        if track in played:
            day = max(request.day, first_day) if request.day is not None else int(catalog.release_day.max())
            released = catalog.release_day <= day
            if int(released.sum()) > len(played):
                raise _fail(name, "no repeats when avoidable", f"track {track} was already played in the session of {request}")


def _compare(name: str, check: str, requests: Sequence[Request], expected: Sequence[Any], got: Sequence[Any]) -> None:
    if len(got) != len(expected):
        raise _fail(name, check, f"{len(got)} answers for {len(expected)} requests")
    for request, a, b in zip(requests, expected, got, strict=True):
        if tuple(a) != tuple(b):
            raise _fail(name, check, f"{a} then {b} for {request}")


def _has_artifacts(recommender: Recommender) -> bool:
    return all(callable(getattr(recommender, method, None)) for method in ("fit", "save", "load"))


class _Rules:
    """Runs rules in order, reporting each to `progress`; stops at the first broken one unless `keep_going`."""

    def __init__(self, report: ContractReport, progress: Progress | None, keep_going: bool) -> None:
        self.report = report
        self.progress = progress
        self.keep_going = keep_going

    def passed(self, *rules: str) -> None:
        for rule in rules:
            self.report.checks.append(rule)
            if self.progress is not None:
                self.progress(rule, None)

    def broken(self, rule: str, error: ContractError) -> None:
        self.report.failures.append(error)
        if self.progress is not None:
            self.progress(rule, error)
        if not self.keep_going:
            raise error


def _rule_of(error: ContractError) -> str:
    """The rule an error names: a `BrokenRule`'s own, else the quoted name after "fails"."""
    if isinstance(error, BrokenRule):
        return ERROR_KINDS.get(error.kind, error.kind)
    text, marker = str(error), "fails '"
    at = text.find(marker)
    if at < 0:
        return "contract"
    start = at + len(marker)
    return text[start : text.find("'", start)]


def check_recommender(
    factory: Callable[[], Recommender],
    catalog: Catalog,
    *,
    requests: Sequence[Request] | None = None,
    events: pd.DataFrame | None = None,
    latency_budget: float = DEFAULT_LATENCY_BUDGET,
    tmp_dir: str | Path | None = None,
    quick: bool = False,
    keep_going: bool = False,
    progress: Progress | None = None,
) -> ContractReport:
    """Run the contract checks (see the module docstring) and return what was measured.

    The rules run in order and each is reported to `progress` as it passes or breaks; the
    latency budget is probed on the first calls before anything else, so a slow plugin fails in
    seconds, not after every other rule.

    Args:
        factory: builds a fresh recommender over `catalog`, e.g. `lambda: MyRecommender(catalog)`.
            A trainable one may come unfitted: the kit fits it on `events`.
        catalog: the catalog the recommender serves.
        requests: the requests to ask; default `make_requests(catalog, 200)` (50 when `quick`).
        events: the log to fit on; default `make_events(catalog)` (a smaller one when `quick`).
        latency_budget: the most seconds the median `recommend` call may take.
        tmp_dir: where to save artifacts (a temporary directory by default).
        quick: fewer requests, a smaller log and one timed batch: the same rules, for editing loops.
        keep_going: run every rule that can run and raise one error listing all the broken ones.
        progress: called with (rule, None) when a rule passes and (rule, error) when it breaks.

    Raises:
        ContractError: the first check that failed, with the request and the answer (with
            `keep_going`, all of them in one message).
    """
    requests = list(requests) if requests is not None else make_requests(catalog, QUICK_REQUESTS if quick else 200)
    if events is None:
        events = make_events(catalog, **QUICK_EVENTS) if quick else make_events(catalog)
    first = factory()
    name = type(first).name
    report = ContractReport(name=name, requests=len(requests))
    rules = _Rules(report, progress, keep_going)
    with tempfile.TemporaryDirectory() as scratch:
        _run_rules(factory, catalog, requests, events, latency_budget, Path(tmp_dir if tmp_dir is not None else scratch), quick, first, rules)
    if report.failures:
        if len(report.failures) == 1:
            raise report.failures[0]
        raise ContractError(f"recommender {name!r} breaks {len(report.failures)} rules:\n" + "\n".join(str(e) for e in report.failures))
    return report


def _run_rules(
    factory: Callable[[], Recommender],
    catalog: Catalog,
    requests: list[Request],
    events: pd.DataFrame,
    latency_budget: float,
    scratch: Path,
    quick: bool,
    first: Recommender,
    rules: _Rules,
) -> None:
    report = rules.report
    name = report.name
    trainable = isinstance(first, Trainable)
    artifact = scratch / f"{name}-artifact"

    def build(fitted: bool = True) -> Recommender:
        recommender = factory()
        if fitted and trainable and not recommender.fitted:  # type: ignore[attr-defined]
            recommender.fit(events)  # type: ignore[attr-defined]
        return recommender

    def attempt(rule: str, check: Callable[[], None]) -> None:
        try:
            check()
        except ContractError as error:
            rules.broken(_rule_of(error), error)
        else:
            rules.passed(rule)

    if trainable and not first.fitted:  # type: ignore[attr-defined]
        def not_fitted() -> None:
            try:
                first.recommend(requests[0])
            except NotFittedError:
                return
            except Exception as error:
                raise _fail(name, "NotFittedError before fit", f"raised {type(error).__name__}: {error} instead") from error
            raise _fail(name, "NotFittedError before fit", "an unfitted trainable recommender answered")

        attempt("NotFittedError before fit", not_fitted)
    recommender = build()

    # The first pass: every request asked alone, the first calls timed against the budget.
    answers: list[tuple[int, float | None]] = []
    probe: list[float] = []
    try:
        for request in requests:
            started = time.perf_counter()
            answers.append(ask(recommender, name, catalog.n_tracks, request))
            if len(probe) < LATENCY_PROBE:
                probe.append(time.perf_counter() - started)
                if len(probe) == min(LATENCY_PROBE, len(requests)) and float(np.median(probe)) > latency_budget:
                    median = float(np.median(probe)) * 1e3
                    detail = f"median of the first {len(probe)} recommend() calls took {median:.2f} ms, budget {latency_budget * 1e3:.2f} ms"
                    raise _fail(name, "latency budget", detail)
    except ContractError as error:
        rules.broken(_rule_of(error), error)
        return  # with keep_going: every later rule needs valid answers
    rules.passed(*ANSWER_RULES)
    try:
        _check_behaviour(name, catalog, requests, answers)
    except ContractError as error:
        rules.broken(_rule_of(error), error)
    else:
        rules.passed(*BEHAVIOUR_RULES)
    report.distinct_tracks = len({track for track, _ in answers})

    attempt("same answers when asked again", lambda: _compare(name, "same answers when asked again", requests, answers, _answers(name, catalog, recommender, requests)))
    attempt("deterministic across instances", lambda: _compare(name, "deterministic across instances", requests, answers, _answers(name, catalog, build(), requests)))

    def batch() -> None:
        timings = []
        for _ in range(1 if quick else 3):  # the best of three: one call is at the mercy of a busy machine
            started = time.perf_counter()
            got = _batch_answers(name, catalog, recommender, requests)
            timings.append(time.perf_counter() - started)
        report.batch_latency_s = min(timings) / max(len(requests), 1)
        _compare(name, "batch agrees with single", requests, answers, got)

    attempt("batch agrees with single", batch)

    def empty_batch() -> None:
        if list(recommender.recommend_batch([])) != []:
            raise _fail(name, "empty batch", "recommend_batch([]) must return []")

    attempt("empty batch", empty_batch)

    params = recommender.get_params()
    cls = type(recommender)

    def unknown_parameters() -> None:
        try:
            cls(catalog, **params, **{UNKNOWN_PARAMETER: 1})
        except TypeError as error:
            if UNKNOWN_PARAMETER not in str(error):
                raise _fail(name, "unknown parameters raise TypeError", f"the message does not name the parameter: {error}") from error
        else:
            raise _fail(name, "unknown parameters raise TypeError", f"{cls.__name__}(catalog, {UNKNOWN_PARAMETER}=1) was accepted")

    attempt("unknown parameters raise TypeError", unknown_parameters)

    if _has_artifacts(recommender):
        def round_trip() -> None:
            expected = answers
            if not trainable:
                recommender.fit(events)  # type: ignore[attr-defined]
                expected = _answers(name, catalog, recommender, requests)
                _check_behaviour(name, catalog, requests, expected)
            recommender.save(artifact)  # type: ignore[attr-defined]
            loaded = cls(catalog, **params)
            loaded.load(artifact)  # type: ignore[attr-defined]
            _compare(name, "save / load round trip", requests, expected, _answers(name, catalog, loaded, requests))

        attempt("save / load round trip", round_trip)
    else:
        attempt("get_params round trip", lambda: _compare(name, "get_params round trip", requests, answers, _answers(name, catalog, cls(catalog, **params), requests)))

    def latency() -> None:
        timings = []
        for request in requests:
            started = time.perf_counter()
            recommender.recommend(request)
            timings.append(time.perf_counter() - started)
        report.median_latency_s = float(np.median(timings))
        report.p99_latency_s = float(np.quantile(timings, 0.99))
        if report.median_latency_s > latency_budget:
            detail = f"median recommend() took {report.median_latency_s * 1e3:.2f} ms, budget {latency_budget * 1e3:.2f} ms"
            raise _fail(name, "latency budget", detail)

    attempt("latency budget", latency)
