"""Serving: answer valid next/last items and log each one as an event.

`Service.serve(items)` is the one code path behind `POST /next`, `POST /last` and `POST /batch`
(a single request is a batch of one), and behind the simulator's in-process (`local:`) runs, so
a batch answers exactly what the single endpoints would, and a local run what the service would. For a batch it: appends every item to its session's history in order, assigns each user
to every experiment, groups the `next` items by the serving treatment and asks each treatment's
recommender once through `recommend_batch`, then buffers one event per served item.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from botify.config import LimitsConfig
from botify.experiments import Experiments
from botify.history import History, HistoryStore, Step
from botify.validation import Item
from contracts.catalog import Catalog
from contracts.columns import MESSAGE_LAST, MESSAGE_NEXT, Columns
from contracts.eventlog.writer import EventWriter, Row, make_row
from contracts.seeds import request_seed
from recommenders.answers import SLOW, BrokenRule, Outcome, ask_all
from recommenders.base import Request

logger = logging.getLogger(__name__)

MS_PER_DAY = 86_400_000
MAX_ERROR_MESSAGE = 500  # characters of a broken rule's message kept in the log


class ServeError(RuntimeError):
    """An item that could not be served because of a fault on our side (logged, not echoed)."""


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
        """Answer `items` in order: a track id for `next`, None for `last`, or a `ServeError`.

        In the log, each event's latency is its share of the batch: its treatment group's
        recommender time divided by the group's size, plus an equal share of the common work.
        """
        started = time.perf_counter()
        now_us = time.time_ns() // 1000
        n = len(items)
        histories = self.history.update([Step(it.user, it.session, it.track, it.time, it.message == MESSAGE_LAST) for it in items])
        assignments = [self.experiments.assignments(it.user) for it in items]
        serving = self._serving
        groups: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            if item.message == MESSAGE_NEXT:
                groups.setdefault(assignments[i][serving], []).append(i)
        answers: list[int | None | ServeError] = [None] * n
        propensities: list[float | None] = [None] * n
        greedies: list[int | None] = [None] * n
        latencies = [0.0] * n
        errors: list[BrokenRule | None] = [None] * n
        served_by = [self._names[assignment[serving]] for assignment in assignments]
        for treatment, indices in groups.items():
            try:
                requests = [self._request(items[i], histories[i]) for i in indices]  # type: ignore[arg-type]
            except Exception as error:
                failure = self._failure(error, treatment, len(indices))
                for i in indices:
                    answers[i] = failure
                continue
            outcomes = ask_all(
                self.experiments.recommenders[treatment], self._names[treatment], self._n_tracks, requests, budget=self._budgets[treatment]
            )
            failed = [k for k, outcome in enumerate(outcomes) if outcome.track is None]
            rescued = self._fallback(treatment, [requests[k] for k in failed]) if failed else []
            for k, rescue in zip(failed, rescued, strict=True):
                outcomes[k] = outcomes[k]._replace(
                    track=rescue.track, propensity=rescue.propensity, seconds=outcomes[k].seconds + rescue.seconds, greedy=None, served_by=None
                )
            for i, outcome in zip(indices, outcomes, strict=True):
                latencies[i] = outcome.seconds
                errors[i] = outcome.error
                if outcome.track is None:
                    logger.error("%s; no fallback answered", outcome.error)
                    answers[i] = ServeError(str(outcome.error))
                    continue
                if outcome.error is not None and outcome.error.kind != SLOW:
                    logger.warning("%s; the fallback %r answered", outcome.error, self._fallback_names[treatment])
                answers[i] = outcome.track
                propensities[i] = outcome.propensity
                greedies[i] = outcome.greedy
                if outcome.error is not None and outcome.error.kind != SLOW:
                    served_by[i] = self._fallback_names[treatment] or served_by[i]
                elif outcome.served_by is not None:
                    served_by[i] = outcome.served_by
        if self.writer is None:
            return answers
        common = (time.perf_counter() - started - sum(latencies)) / n if n else 0.0
        self.writer.extend(
            [
                self._row(item, now_us, answer, name, latency + common, assignment, propensity, error, greedy)
                for item, answer, name, assignment, latency, propensity, error, greedy in zip(
                    items, answers, served_by, assignments, latencies, propensities, errors, greedies, strict=True
                )
                if error is not None or not isinstance(answer, ServeError)  # a fault of ours is logged, not recorded
            ]
        )
        return answers

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

    def _request(self, item: Item, history: History) -> Request:
        day = None if item.ts is None else (item.ts - self._day_zero_ms) // MS_PER_DAY
        return Request(item.user, item.track, item.time, history.tracks, history.times, self.request_seed(item), day)

    def _failure(self, error: Exception, treatment: int, n: int) -> ServeError:
        logger.error("recommender %r (treatment %d) failed on %d requests", self._names[treatment], treatment, n, exc_info=error)
        return error if isinstance(error, ServeError) else ServeError(f"recommender {self._names[treatment]!r} failed")

    def _row(
        self,
        item: Item,
        now_us: int,
        answer: int | None | ServeError,
        recommender: str,
        latency: float,
        assignments: tuple[int, ...],
        propensity: float | None,
        error: BrokenRule | None,
        greedy: int | None = None,
    ) -> Row:
        track = None if isinstance(answer, ServeError) else answer
        kind, message = (None, None) if error is None else (error.kind, str(error)[:MAX_ERROR_MESSAGE])
        return make_row(
            {
                Columns.TS: now_us if item.ts is None else item.ts * 1000,
                Columns.USER: item.user,
                Columns.SESSION: item.session,
                Columns.MESSAGE: item.message,
                Columns.TRACK: item.track,
                Columns.TIME: item.time,
                Columns.RECOMMENDATION: track,
                Columns.RECOMMENDER: recommender,
                Columns.LATENCY: latency,
                Columns.EXPERIMENTS: assignments,
                Columns.PROPENSITY: propensity,
                Columns.ERROR: kind,
                Columns.ERROR_MESSAGE: message,
                Columns.GREEDY: greedy,
            }
        )
