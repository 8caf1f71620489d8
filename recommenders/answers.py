"""The one validator of a recommender's answers: what `recommenders check`, the service and local runs accept.

Every caller asks through `ask` (one request), `ask_all` (many, through `recommend_batch`) or
`ask_columns` (a `RequestBatch`, through `recommend_columns` where the recommender is columnar),
so the same answer gets the same verdict everywhere. An answer is accepted when it is a
`Recommendation` whose track is an integer id of the catalog (a Python or numpy integer, never
a bool or a float) and whose propensity is None or a real number in (0, 1] (a Python or numpy
number, never a bool). Accepted answers come back as plain Python `int` / `float`.

A broken rule raises (or, in `ask_all`, is returned as) `BrokenRule`, whose message names the
recommender, the rule and the request::

    recommender 'mine' fails 'valid track ids': track 12.0 is a float, must be an integer track id
    of the catalog (0..99); request user 7, track 3, 2 tracks in the session, day 1

Each rule has a short `kind`, the value of the event log's `error` column when the service
meets it (see `ERROR_KINDS`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from recommenders.base import Recommendation, Recommender, Request, RequestBatch

# error kind -> the rule it breaks (the name `recommenders check` prints).
ERROR_KINDS: dict[str, str] = {
    "exception": "answers without raising",
    "wrong_type": "answers are Recommendations",
    "out_of_range": "valid track ids",
    "bad_propensity": "propensity in (0, 1]",
    "slow": "latency budget",
}
SLOW = "slow"


class ContractError(AssertionError):
    """A recommender broke the plugin contract; the message names the check and the request."""


class BrokenRule(ContractError):
    """One answer (or the lack of one) that breaks a rule of the contract.

    Attributes:
        recommender: the registry name of the recommender.
        kind: the rule's short name (a key of `ERROR_KINDS`), logged as the event's `error`.
        detail: what was wrong, with the request.
    """

    def __init__(self, recommender: str, kind: str, detail: str) -> None:
        self.recommender = recommender
        self.kind = kind
        self.detail = detail
        super().__init__(f"recommender {recommender!r} fails '{ERROR_KINDS.get(kind, kind)}': {detail}")


def describe_request(request: Request) -> str:
    """A request in a few words, for messages: user, track, session length and day."""
    day = "" if request.day is None else f", day {request.day}"
    return f"request user {request.user}, track {request.track}, {len(request.history)} tracks in the session{day}"


def _is_integer(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def _type_name(value: object) -> str:
    return type(value).__name__ if type(value).__module__ == "builtins" else f"{type(value).__module__}.{type(value).__qualname__}"


def validate(name: str, n_tracks: int, request: Request, answer: Any) -> tuple[int, float | None]:
    """The accepted (track, propensity) of `answer` to `request`, as plain Python values.

    Raises:
        BrokenRule: `answer` is not a `Recommendation`, its track is not an integer id below
            `n_tracks`, or its propensity is not None nor a number in (0, 1].
    """
    if type(answer) is Recommendation:  # the common case, checked without building any message
        track, propensity = answer.track, answer.propensity
        if type(track) is int and 0 <= track < n_tracks and (propensity is None or (type(propensity) is float and 0.0 < propensity <= 1.0)):
            return track, propensity
    where = describe_request(request)
    if not isinstance(answer, Recommendation):
        raise BrokenRule(name, "wrong_type", f"got {answer!r} ({_type_name(answer)}), must be a Recommendation(track, propensity); {where}")
    track, propensity = answer.track, answer.propensity
    if not _is_integer(track):
        raise BrokenRule(
            name, "wrong_type",
            f"track {track!r} is a {_type_name(track)}, must be an integer track id of the catalog (0..{n_tracks - 1}); {where}",
        )
    if not 0 <= int(track) < n_tracks:
        raise BrokenRule(name, "out_of_range", f"track {int(track)} is not a track id of the catalog (0..{n_tracks - 1}); {where}")
    if propensity is None:
        return int(track), None
    if not _is_real(propensity) or not (0.0 < float(propensity) <= 1.0) or math.isnan(float(propensity)):
        raise BrokenRule(name, "bad_propensity", f"propensity {propensity!r} ({_type_name(propensity)}), must be None or a number in (0, 1]; {where}")
    return int(track), float(propensity)


def exception_rule(name: str, request: Request, error: BaseException) -> BrokenRule:
    """The broken rule of a `recommend` call that raised `error`."""
    return BrokenRule(name, "exception", f"raised {type(error).__name__}: {error}; {describe_request(request)}")


def slow_rule(name: str, request: Request, seconds: float, budget: float) -> BrokenRule:
    """The broken rule of an answer that took `seconds`, over its `budget`."""
    detail = f"the answer took {seconds * 1e3:.2f} ms, budget {budget * 1e3:.2f} ms; {describe_request(request)}"
    return BrokenRule(name, SLOW, detail)


def ask(recommender: Recommender, name: str, n_tracks: int, request: Request) -> tuple[int, float | None]:
    """`recommender.recommend(request)`, validated: (track, propensity), or `BrokenRule` (an exception included)."""
    try:
        answer = recommender.recommend(request)
    except Exception as error:
        raise exception_rule(name, request, error) from error
    return validate(name, n_tracks, request, answer)


class Outcome(NamedTuple):
    """One request's answer as `ask_all` found it.

    Attributes:
        track: the accepted track, or None when a rule other than the latency budget was broken.
        propensity: the accepted propensity (None when the recommender cannot say, or no track).
        seconds: this request's share of the time spent asking.
        error: the broken rule, or None. With kind `slow`, `track` is still the (valid) answer.
        greedy: what an exploring policy would have served without exploring (a catalog id), or None.
        served_by: the inner recommender the answer names as its source (`Recommendation.served_by`), or None.
    """

    track: int | None
    propensity: float | None
    seconds: float
    error: BrokenRule | None
    greedy: int | None = None
    served_by: str | None = None


def ask_all(
    recommender: Recommender, name: str, n_tracks: int, requests: Sequence[Request], *, budget: float | None = None
) -> list[Outcome]:
    """Ask `recommender` for every request at once (`recommend_batch`; `recommend` for one) and validate.

    When the batch call raises, or answers another number of requests, each request is asked
    alone, so that only the requests that fail get a broken rule. An answer whose share of the
    time is over `budget` seconds keeps its track and gets the `slow` rule.
    """
    if not requests:
        return []
    started = time.perf_counter()
    answers: list[Any] | None
    try:
        answers = list(recommender.recommend_batch(requests)) if len(requests) > 1 else [recommender.recommend(requests[0])]
    except Exception as error:
        if len(requests) == 1:
            return [Outcome(None, None, time.perf_counter() - started, exception_rule(name, requests[0], error))]
        answers = None
    if answers is not None and len(answers) == len(requests):
        share = (time.perf_counter() - started) / len(requests)
        return [_outcome(name, n_tracks, request, answer, share, budget) for request, answer in zip(requests, answers, strict=True)]
    # Isolate the failing requests: the rest are answered as `recommend` would.
    outcomes = []
    for request in requests:
        tick = time.perf_counter()
        try:
            answer = recommender.recommend(request)
        except Exception as error:
            outcomes.append(Outcome(None, None, time.perf_counter() - tick, exception_rule(name, request, error)))
            continue
        outcomes.append(_outcome(name, n_tracks, request, answer, time.perf_counter() - tick, budget))
    return outcomes


def _outcome(name: str, n_tracks: int, request: Request, answer: Any, seconds: float, budget: float | None) -> Outcome:
    if type(answer) is Recommendation and (budget is None or seconds <= budget):  # the common case, at the least cost
        track, propensity = answer[0], answer[1]
        if (
            type(track) is int
            and 0 <= track < n_tracks
            and (propensity is None or (type(propensity) is float and 0.0 < propensity <= 1.0))
            and (len(answer) == 2 or (answer[2] is None and answer[3] is None))
        ):
            return Outcome(track, propensity, seconds, None)
    try:
        track, propensity = validate(name, n_tracks, request, answer)
    except BrokenRule as broken:
        return Outcome(None, None, seconds, broken)
    slow = slow_rule(name, request, seconds, budget) if budget is not None and seconds > budget else None
    # A plugin's fast path may build its Recommendations with `tuple.__new__` from (track, propensity)
    # pairs, written before the added fields: read them only where present.
    greedy, served_by = (tuple(answer[2:4]) + (None, None))[:2]
    greedy = int(greedy) if _is_integer(greedy) and 0 <= int(greedy) < n_tracks else None
    served_by = served_by if isinstance(served_by, str) and served_by else None
    return Outcome(track, propensity, seconds, slow, greedy, served_by)


class Outcomes(NamedTuple):
    """`Outcome`s of a batch as columns (what `ask_columns` returns); `at(i)` is request i's `Outcome`.

    Attributes:
        tracks: the accepted tracks, int64, -1 where no track.
        propensity: the accepted propensities, float64, NaN where None.
        seconds: each request's share of the time spent asking, float64.
        errors: the broken rule per request (None where none), or None when no request broke one.
        greedy: `Outcome.greedy` per request, or None when all are None.
        served_by: `Outcome.served_by` per request, or None when all are None.
    """

    tracks: np.ndarray
    propensity: np.ndarray
    seconds: np.ndarray
    errors: list[BrokenRule | None] | None = None
    greedy: list[int | None] | None = None
    served_by: list[str | None] | None = None

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> Outcomes:
        """The columns of `outcomes`."""
        n = len(outcomes)
        errors = [o.error for o in outcomes]
        greedy = [o.greedy for o in outcomes]
        served_by = [o.served_by for o in outcomes]
        return cls(
            np.array([-1 if o.track is None else o.track for o in outcomes], dtype=np.int64).reshape(n),
            np.array([np.nan if o.propensity is None else o.propensity for o in outcomes], dtype=np.float64).reshape(n),
            np.array([o.seconds for o in outcomes], dtype=np.float64).reshape(n),
            errors if any(e is not None for e in errors) else None,
            greedy if any(g is not None for g in greedy) else None,
            served_by if any(b is not None for b in served_by) else None,
        )

    def at(self, i: int) -> Outcome:
        """Request i's `Outcome`."""
        track, propensity = int(self.tracks[i]), float(self.propensity[i])
        return Outcome(
            None if track < 0 else track, None if propensity != propensity else propensity, float(self.seconds[i]),
            None if self.errors is None else self.errors[i], None if self.greedy is None else self.greedy[i],
            None if self.served_by is None else self.served_by[i],
        )  # fmt: skip


def ask_columns(recommender: Recommender, name: str, n_tracks: int, batch: RequestBatch, *, budget: float | None = None) -> Outcomes:
    """`ask_all` of the requests in `batch`, as columns, with the same verdicts.

    A columnar recommender answers the batch as arrays (`recommend_columns`); when every answer
    keeps the rules (`_outcome`'s common case: tracks of the catalog, propensities None or in
    (0, 1]), no object is built per request. Otherwise, and for any other recommender, the
    requests are asked through `ask_all`, which names each broken rule.
    """
    n = len(batch)
    if recommender.columnar and n > 1:
        started = time.perf_counter()
        try:
            tracks, propensity = recommender.recommend_columns(batch)
        except Exception:
            tracks = None  # `ask_all` asks again and finds the requests that fail
        if tracks is not None:
            share = (time.perf_counter() - started) / n
            if _kept_rules(tracks, propensity, n, n_tracks):
                tracks = tracks.astype(np.int64, copy=False)
                seconds = np.full(n, share)
                if budget is None or share <= budget:
                    return Outcomes(tracks, propensity.astype(np.float64, copy=False), seconds)
                errors: list[BrokenRule | None] = [slow_rule(name, request, share, budget) for request in batch.requests()]
                return Outcomes(tracks, propensity.astype(np.float64, copy=False), seconds, errors)
    return Outcomes.of(ask_all(recommender, name, n_tracks, batch.requests(), budget=budget))


def _kept_rules(tracks: Any, propensity: Any, n: int, n_tracks: int) -> bool:
    """Whether columnar answers are n integer tracks of the catalog with propensities NaN (None) or in (0, 1]."""
    if not (isinstance(tracks, np.ndarray) and isinstance(propensity, np.ndarray)) or tracks.shape != (n,) or propensity.shape != (n,):
        return False
    if tracks.dtype.kind not in "iu" or propensity.dtype.kind != "f":
        return False
    if not (tracks.min() >= 0 and tracks.max() < n_tracks):
        return False
    known = propensity[~np.isnan(propensity)]
    return bool(known.size == 0 or (known.min() > 0.0 and known.max() <= 1.0))
