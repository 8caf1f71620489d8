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
from contracts.eventlog.writer import EventWriter, Row
from contracts.seeds import request_seed
from recommenders.answers import SLOW, Outcome, ask_all
from recommenders.base import Request

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
        if len(items) == 1:  # the single endpoints' path: the same steps, without a batch's lists
            return [self._serve_one(items[0])]
        started = time.perf_counter()
        now_us = time.time_ns() // 1000
        n = len(items)
        histories = self.history.update([Step(user, session, track, listened, message == MESSAGE_LAST) for message, user, track, listened, session, _ in items])
        assign = self.experiments.assignments
        assignments = [assign(item[1]) for item in items]
        serving = self._serving
        groups: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            if item[0] == MESSAGE_NEXT:
                groups.setdefault(assignments[i][serving], []).append(i)
        answers: list[int | None | ServeError] = [None] * n
        outcomes: list[Outcome | None] = [None] * n  # None for `last` and for a fault of ours
        served_by: list[str | None] = [None] * n  # where the serving treatment's name is not what served
        for treatment, indices in groups.items():
            try:
                requests = self._requests(items, histories, indices)
            except Exception as error:
                failure = self._failure(error, treatment, len(indices))
                for i in indices:
                    answers[i] = failure
                continue
            for i, outcome in zip(indices, self._ask(treatment, requests), strict=True):
                outcomes[i] = outcome
                answers[i], served_by[i] = self._settle(treatment, outcome)
        writer = self.writer
        if writer is None:
            return answers
        writer.extend(self._rows(items, now_us, started, answers, outcomes, served_by, assignments))
        return answers

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
        items: Sequence[Item],
        now_us: int,
        started: float,
        answers: list[int | None | ServeError],
        outcomes: list[Outcome | None],
        served_by: list[str | None],
        assignments: list[tuple[int, ...]],
    ) -> list[Row]:
        """One event row per item, except the items that failed by a fault of ours (logged, not recorded)."""
        spent = 0.0
        for outcome in outcomes:
            if outcome is not None:
                spent += outcome.seconds
        common = (time.perf_counter() - started - spent) / len(items) if items else 0.0
        serving, names = self._serving, self._names
        rows: list[Row] = []
        for i, (message, user, track, listened, session, ts) in enumerate(items):
            answer, outcome = answers[i], outcomes[i]
            assignment = assignments[i]
            name = served_by[i] or names[assignment[serving]]
            if outcome is None:
                if isinstance(answer, ServeError):
                    continue
                rows.append((now_us if ts is None else ts * 1000, user, session, message, track, listened, answer, name, common, assignment, None, None, None, None))
                continue
            error = outcome.error
            if error is None:
                kind = text = None
            else:
                kind, text = error.kind, str(error)[:MAX_ERROR_MESSAGE]
            rows.append((
                now_us if ts is None else ts * 1000, user, session, message, track, listened, outcome.track, name, outcome.seconds + common,
                assignment, outcome.propensity, kind, text, outcome.greedy,
            ))  # fmt: skip
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
