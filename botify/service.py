"""Serving: answer valid next/last items and log each one as an event.

`Service.serve(items)` is the one code path behind `POST /next`, `POST /last` and `POST /batch`
(a single request is a batch of one), and behind the simulator's in-process (`local:`) runs, so
a batch answers exactly what the single endpoints would, and a local run what the service would.
A batch is served as columns (`serve_batch` of an `ItemBatch`, which the simulator builds from its
arrays): it appends every item to its session's history in order, assigns each user to every
experiment, groups the `next` items by the serving treatment and asks each treatment's
recommender once (`ask_columns`: as arrays where the recommender is columnar, else through
`recommend_batch`), then buffers one event per served item.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from botify.batch import ItemBatch
from botify.config import LimitsConfig
from botify.experiments import Experiments
from botify.history import Histories, History, HistoryStore, Step
from botify.validation import Item
from contracts.catalog import Catalog
from contracts.columns import MESSAGE_LAST, MESSAGE_NEXT, Columns
from contracts.seeds import request_seed, request_seeds
from recommenders.answers import SLOW, Outcome, Outcomes, ask_all, ask_columns
from recommenders.base import NO_DAY, Request, RequestBatch, segment_positions

if TYPE_CHECKING:  # the writer's module loads DuckDB, which a service without a log does without
    from contracts.eventlog.writer import EventWriter, Row

logger = logging.getLogger(__name__)

MS_PER_DAY = 86_400_000
MAX_ERROR_MESSAGE = 500  # characters of a broken rule's message kept in the log

# `Service._rows` builds each event as a plain tuple in this order, the hot path's fastest form;
# a column added to the declared schema must be added there too, and this check says so at import.
ROW_COLUMNS = (
    Columns.TS, Columns.USER, Columns.SESSION, Columns.MESSAGE, Columns.TRACK, Columns.TIME, Columns.RECOMMENDATION, Columns.RECOMMENDER,
    Columns.LATENCY, Columns.EXPERIMENTS, Columns.PROPENSITY, Columns.ERROR, Columns.ERROR_MESSAGE, Columns.GREEDY,
)  # fmt: skip
if ROW_COLUMNS != Columns.ALL:
    raise ImportError(f"botify.service builds event rows as {ROW_COLUMNS}, but the log declares {Columns.ALL}: update Service._rows")


class ServeError(RuntimeError):
    """An item that could not be served because of a fault on our side (logged, not echoed)."""


class Served(NamedTuple):
    """The answers of a batch: `tracks[i]` for a served `next`; -1 for a `last` and for the items in `failures`."""

    tracks: np.ndarray
    failures: dict[int, ServeError]

    def answers(self, batch: ItemBatch) -> list[int | None | ServeError]:
        """`Service.serve`'s form: a track for `next`, None for `last`, or the `ServeError`."""
        answers: list[int | None | ServeError] = [None if last else track for last, track in zip(batch.last.tolist(), self.tracks.tolist(), strict=True)]
        for i, failure in self.failures.items():
            answers[i] = failure
        return answers


@dataclass
class Service:
    """Everything a request needs, built once at start-up by `create_app`.

    Attributes:
        catalog: the public catalog of the served world.
        experiments: the active experiments and the serving treatments' recommenders.
        history: the listen-history store.
        writer: this process's event writer; None records nothing (an in-process run without a log).
        limits: bounds on request bodies and batches.
        seed: mixed into every request's seed.
        day_zero: the date of simulated day 0, to turn a client's `ts` into `Request.day`.
    """

    catalog: Catalog
    experiments: Experiments
    history: HistoryStore
    writer: EventWriter | None
    limits: LimitsConfig = LimitsConfig()
    seed: int = 0
    day_zero: dt.date = dt.date(2025, 12, 31)

    def __post_init__(self) -> None:
        self._day_zero_ms = int(dt.datetime.combine(self.day_zero, dt.time(), dt.UTC).timestamp() * 1000)
        self._n_tracks = self.catalog.n_tracks
        self._serving = self.experiments.serving
        self._names = self.experiments.recommender_names
        self._fallbacks = self.experiments.fallbacks
        self._fallback_names = self.experiments.fallback_names
        self._budgets = self.experiments.latency_budgets

    def request_seed(self, item: Item) -> int:
        """The seed of a request (`contracts.seeds.request_seed` with this service's seed)."""
        return request_seed(self.seed, item.session, item.ts)

    def serve(self, items: Sequence[Item]) -> list[int | None | ServeError]:
        """Answer `items` in order: a track id for `next`, None for `last`, or a `ServeError`."""
        if len(items) == 1:  # the single endpoints' path: the same steps, without a batch's arrays
            return [self._serve_one(items[0])]
        batch = ItemBatch.of(items)
        return self.serve_batch(batch).answers(batch)

    def serve_batch(self, batch: ItemBatch) -> Served:
        """Answer a batch given as columns; what `serve` does for many items.

        In the log, each event's latency is its share of the batch: its treatment group's
        recommender time divided by the group's size, plus an equal share of the common work.
        """
        started = time.perf_counter()
        now_us = time.time_ns() // 1000
        n = len(batch)
        users = batch.users.tolist()
        histories = self.history.update_columns(users, batch.sessions, batch.tracks.tolist(), batch.times.tolist(), batch.last.tolist())
        writer = self.writer
        # Assignment is pure: with one treatment and no log, nothing would read it.
        assignments = [] if len(self._names) == 1 and writer is None else list(map(self.experiments.assignments, users))
        serving = self._serving
        asked = np.flatnonzero(~batch.last)
        groups: list[tuple[int, np.ndarray]] = []
        if len(self._names) == 1:
            groups = [(0, asked)] if len(asked) else []
        else:
            treatments = np.fromiter((assignment[serving] for assignment in assignments), np.int64, n)[asked]
            groups = [(t, asked[treatments == t]) for t in dict.fromkeys(treatments.tolist())]
        tracks = np.full(n, -1, dtype=np.int64)
        failures: dict[int, ServeError] = {}
        asks: list[tuple[np.ndarray, Outcomes]] = []
        served_by: dict[int, str] = {}  # where the serving treatment's name is not what served
        for treatment, indices in groups:
            try:
                requests = self._request_batch(batch, histories, indices)
            except Exception as error:
                failure = self._failure(error, treatment, len(indices))
                failures.update(dict.fromkeys(indices.tolist(), failure))
                continue
            outcomes = self._ask_columns(treatment, requests)
            asks.append((indices, outcomes))
            tracks[indices] = outcomes.tracks
            if outcomes.errors is not None or outcomes.served_by is not None or (outcomes.tracks < 0).any():
                for k, i in enumerate(indices.tolist()):
                    answer, name = self._settle(treatment, outcomes.at(k))
                    if isinstance(answer, ServeError):
                        failures[i] = answer
                        tracks[i] = -1
                    if name is not None:
                        served_by[i] = name
        if writer is not None:
            writer.extend(self._rows(batch, now_us, started, tracks, failures, asks, served_by, assignments))
        return Served(tracks, failures)

    def _serve_one(self, item: Item) -> int | None | ServeError:
        """`serve([item])[0]`: the same steps as a batch's, for one item."""
        started = time.perf_counter()
        message, user, track, listened, session, ts = item
        history = self.history.update([Step(user, session, track, listened, message == MESSAGE_LAST)])[0]
        assignment = self.experiments.assignments(user)
        treatment = assignment[self._serving]
        outcome: Outcome | None = None
        answer: int | None | ServeError = None
        served_by: str | None = None
        if message == MESSAGE_NEXT:
            try:
                requests = self._requests((item,), (history,), [0])
            except Exception as error:
                return self._failure(error, treatment, 1)
            outcome = self._ask(treatment, requests)[0]
            answer, served_by = self._settle(treatment, outcome)
        writer = self.writer
        if writer is None:
            return answer
        stamp = time.time_ns() // 1000 if ts is None else ts * 1000
        name = served_by or self._names[treatment]
        if outcome is None:
            writer.append((stamp, user, session, message, track, listened, None, name, time.perf_counter() - started, assignment, None, None, None, None))
            return answer
        broken = outcome.error
        kind, text = (None, None) if broken is None else (broken.kind, str(broken)[:MAX_ERROR_MESSAGE])
        writer.append((
            stamp, user, session, message, track, listened, outcome.track, name, time.perf_counter() - started,
            assignment, outcome.propensity, kind, text, outcome.greedy,
        ))  # fmt: skip
        return answer

    def _settle(self, treatment: int, outcome: Outcome) -> tuple[int | ServeError, str | None]:
        """The answer of one asked item and, where it is not the treatment's own recommender, the name of what served it."""
        error = outcome.error
        if outcome.track is None:
            logger.error("%s; no fallback answered", error)
            return ServeError(str(error)), None
        if error is not None and error.kind != SLOW:
            logger.warning("%s; the fallback %r answered", error, self._fallback_names[treatment])
            return outcome.track, self._fallback_names[treatment]
        return outcome.track, outcome.served_by

    def _requests(self, items: Sequence[Item], histories: Sequence[History | None], indices: list[int]) -> list[Request]:
        """The recommender's requests of `items` at `indices` (all `next`), with their histories, seeds and days."""
        seed, day_zero_ms = self.seed, self._day_zero_ms
        requests = []
        for i in indices:
            _, user, track, listened, session, ts = items[i]
            history: History = histories[i]  # type: ignore[assignment]  # a `next` always has one
            if ts is None:
                requests.append(Request(user, track, listened, history.tracks, history.times, request_seed(seed, session, ts), None))
            else:
                requests.append(Request(user, track, listened, history.tracks, history.times, request_seed(seed, session, ts), (ts - day_zero_ms) // MS_PER_DAY))
        return requests

    def _request_batch(self, batch: ItemBatch, histories: Histories, indices: np.ndarray) -> RequestBatch:
        """The recommender's requests of the items of `batch` at `indices` (all `next`), with their histories, seeds and days."""
        chosen = indices.tolist()
        if len(chosen) == len(batch):
            sessions, stamps = batch.sessions, batch.ts
        else:
            pick = operator.itemgetter(*chosen)  # one gather in C; a tuple for two or more
            sessions, stamps = (list(pick(batch.sessions)), list(pick(batch.ts))) if len(chosen) > 1 else ([batch.sessions[chosen[0]]], [batch.ts[chosen[0]]])
        seeds = request_seeds(self.seed, sessions, stamps)
        if None in stamps:
            days = np.array([NO_DAY if t is None else (t - self._day_zero_ms) // MS_PER_DAY for t in stamps], dtype=np.int64)
        else:
            days = (np.array(stamps, dtype=np.int64) - self._day_zero_ms) // MS_PER_DAY
        positions, offsets = segment_positions(histories.offsets, indices)
        return RequestBatch(
            batch.users[indices], batch.tracks[indices], batch.times[indices], seeds, days.reshape(len(chosen)),
            histories.tracks[positions], histories.times[positions], offsets,
        )  # fmt: skip

    def _ask_columns(self, treatment: int, requests: RequestBatch) -> Outcomes:
        """`_ask` of a batch of requests given as columns."""
        outcomes = ask_columns(self.experiments.recommenders[treatment], self._names[treatment], self._n_tracks, requests, budget=self._budgets[treatment])
        failed = np.flatnonzero(outcomes.tracks < 0)
        if not len(failed):
            return outcomes
        tracks, propensity, seconds = outcomes.tracks.copy(), outcomes.propensity.copy(), outcomes.seconds.copy()
        greedy = None if outcomes.greedy is None else list(outcomes.greedy)
        served_by = None if outcomes.served_by is None else list(outcomes.served_by)
        rescued = self._fallback(treatment, requests.requests(failed.tolist()))
        for k, rescue in zip(failed.tolist(), rescued, strict=True):
            tracks[k] = -1 if rescue.track is None else rescue.track
            propensity[k] = np.nan if rescue.propensity is None else rescue.propensity
            seconds[k] += rescue.seconds
            if greedy is not None:
                greedy[k] = None
            if served_by is not None:
                served_by[k] = None
        return Outcomes(tracks, propensity, seconds, outcomes.errors, greedy, served_by)

    def _ask(self, treatment: int, requests: list[Request]) -> list[Outcome]:
        """The treatment's validated answers to `requests`, the fallback's where its recommender failed."""
        outcomes = ask_all(self.experiments.recommenders[treatment], self._names[treatment], self._n_tracks, requests, budget=self._budgets[treatment])
        failed = [k for k, outcome in enumerate(outcomes) if outcome.track is None]
        if failed:
            rescued = self._fallback(treatment, [requests[k] for k in failed])
            for k, rescue in zip(failed, rescued, strict=True):
                outcomes[k] = outcomes[k]._replace(
                    track=rescue.track, propensity=rescue.propensity, seconds=outcomes[k].seconds + rescue.seconds, greedy=None, served_by=None
                )
        return outcomes

    def _rows(
        self,
        batch: ItemBatch,
        now_us: int,
        started: float,
        tracks: np.ndarray,
        failures: dict[int, ServeError],
        asks: list[tuple[np.ndarray, Outcomes]],
        served_by: dict[int, str],
        assignments: list[tuple[int, ...]],
    ) -> list[Row]:
        """One event row per item, except the items that failed by a fault of ours before their recommender was asked (logged, not recorded)."""
        n = len(batch)
        spent = 0.0
        for _, outcomes in asks:
            spent += float(outcomes.seconds.sum())
        common = (time.perf_counter() - started - spent) / n if n else 0.0
        recommendation = np.full(n, -1, dtype=np.int64)
        propensity = np.full(n, np.nan)
        latency = np.full(n, common)
        none: list[Any] = [None] * n  # shared until a column gets a value
        kinds: list[str | None] = none
        texts: list[str | None] = none
        greedy: list[int | None] = none
        asked = np.zeros(n, dtype=bool)
        for indices, outcomes in asks:
            asked[indices] = True
            recommendation[indices] = outcomes.tracks
            propensity[indices] = outcomes.propensity
            latency[indices] += outcomes.seconds
            chosen = indices.tolist()
            if outcomes.errors is not None:
                kinds, texts = list(kinds), list(texts)
                for i, error in zip(chosen, outcomes.errors, strict=True):
                    if error is not None:
                        kinds[i], texts[i] = error.kind, str(error)[:MAX_ERROR_MESSAGE]
            if outcomes.greedy is not None:
                greedy = list(greedy)
                for i, value in zip(chosen, outcomes.greedy, strict=True):
                    greedy[i] = value
        names, serving = self._names, self._serving
        if len(names) == 1 and not served_by:
            served_names: list[str] = [names[0]] * n
        else:
            served_names = [names[assignment[serving]] for assignment in assignments]
            for i, name in served_by.items():
                served_names[i] = name
        stamps = [now_us if t is None else t * 1000 for t in batch.ts]
        messages = [MESSAGE_LAST if last else MESSAGE_NEXT for last in batch.last.tolist()]
        recommended = [None if t < 0 else t for t in recommendation.tolist()]
        propensities = [None if p != p else p for p in propensity.tolist()]
        rows: list[Row] = list(zip(
            stamps, batch.users.tolist(), batch.sessions, messages, batch.tracks.tolist(), batch.times.tolist(), recommended, served_names,
            latency.tolist(), assignments, propensities, kinds, texts, greedy, strict=True,
        ))  # fmt: skip
        if failures:
            dropped = {i for i in failures if not asked[i]}
            rows = [row for i, row in enumerate(rows) if i not in dropped]
        return rows

    def _fallback(self, treatment: int, requests: list[Request]) -> list[Outcome]:
        """The treatment's fallback answers for `requests` its recommender failed; no track where there is none."""
        fallback = self._fallbacks[treatment]
        if fallback is None:
            return [Outcome(None, None, 0.0, None)] * len(requests)
        outcomes = ask_all(fallback, self._fallback_names[treatment] or "fallback", self._n_tracks, requests)
        for outcome in outcomes:
            if outcome.track is None:
                logger.error("the fallback failed too: %s", outcome.error)
        return outcomes

    def _failure(self, error: Exception, treatment: int, n: int) -> ServeError:
        logger.error("recommender %r (treatment %d) failed on %d requests", self._names[treatment], treatment, n, exc_info=error)
        return error if isinstance(error, ServeError) else ServeError(f"recommender {self._names[treatment]!r} failed")
