"""Simulated days of listening in SimPy: arrivals, overlapping sessions, batched requests, returns.

Scenario. Each simulated day, `episodes` listeners arrive as a Poisson process with a daily
rhythm (more in the evening). Each starts a session: the first track is their own choice,
then they ask for the next track, listen to a fraction of it (which advances their clock by
the track's duration times that fraction), and either ask again or leave with a 'last'
message. Sessions overlap in simulated time. With returns enabled, a listener who leaves may
come back later, sooner after a satisfying session.

Batching. Many sessions are in flight at once, so their requests are gathered over
`batch_window_s` of simulated time and sent together (POST /batch). Every session keeps its
own clock: its timestamps are exact, and a batch only changes the order in which the service
sees requests of *different* sessions within one window, never a session's own order.

Common random numbers. A session's id keys every draw of its listener (see `sim.streams`),
and ids are planned from the seed alone, so two runs with the same seed against different
recommenders simulate the same arrivals, listeners, interests, first tracks and budget coins.
A returning session's id is a pure function of (seed, listener, the session it follows), so a
listener's whole trajectory depends on what that listener was served and on nothing else: the
replay of one listener under another recommender (`sim.run.replay`) leaves every other
listener's sessions as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import cast

import numpy as np
import simpy

from sim import streams
from sim.config import EnvConfig
from sim.env import pick_users
from sim.listener import ListenerModel
from sim.run.clients import LAST, NEXT, Client, Item
from sim.world import World

DAY_S = 86_400.0  # seconds
SESSION_ID_DAY = 1 << 32  # session id = day * SESSION_ID_DAY + index within the day
RETURN_INDEX = 1 << 31  # indices from here on are returning listeners' sessions
ARRIVAL = 101  # stream purposes of the runner (the listener model's are in sim.streams)
RETURN = 102
RETURN_ID = 103  # the within-day index of a returning session
_RHYTHM_GRID = 1_441  # points of the tabulated arrival-time distribution (one per minute)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What the simulator saw of one session (the ground truth for checking the event log)."""

    day: int
    user: int
    session: int
    tracks: int  # recommendations listened to (the first, self-chosen track not counted)
    time: float  # sum of fractions listened over those tracks
    listened_s: float  # seconds listened over those tracks
    start_ts: int  # epoch ms
    end_ts: int  # epoch ms
    returning: bool


def arrival_quantiles(amplitude: float, peak_hour: float) -> tuple[np.ndarray, np.ndarray]:
    """Tabulated CDF of arrival time within a day for rate ~ 1 + a * cos(2 pi (h - peak) / 24)."""
    seconds = np.linspace(0.0, DAY_S, _RHYTHM_GRID)
    hours = seconds / 3600.0
    rate = 1.0 + amplitude * np.cos(2.0 * np.pi * (hours - peak_hour) / 24.0)
    cdf = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2.0)])
    return cdf / cdf[-1], seconds


def plan_day(key: int, day: int, episodes: int, n_users: int, config: EnvConfig, shard: int = 0, n_shards: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Session ids, listeners and arrival times (s since day 1 began) of one shard's share of a day.

    Conditional on their number, the arrivals of a Poisson process are independent draws from
    the rate's normalised shape, which is how they are drawn here: every shard count and every
    recommender sees exactly `episodes` arrivals, and the same ones.
    """
    index = np.arange(shard, episodes, n_shards, dtype=np.int64)
    sessions = day * SESSION_ID_DAY + index
    cdf, seconds = arrival_quantiles(config.time.rhythm_amplitude, config.time.peak_hour)
    within = np.interp(streams.uniform(key, sessions, ARRIVAL), cdf, seconds)
    order = np.argsort(within, kind="stable")
    return sessions[order], pick_users(key, sessions[order], n_users), (day - 1) * DAY_S + within[order]


def return_session(key: int, user: int, previous: int, comeback: float) -> int:
    """The id of `user`'s session that returns at `comeback` (s) after session `previous`.

    Day of the comeback, then an index drawn from (key, user, previous) in the upper half of
    the day's indices: a pure function of the listener's own past, so a listener's returns
    never depend on other listeners (nor on shards). Two returns of one day share an index with
    probability 2**-31 per pair; the listener model keys its draws by (user, session), so even
    then only one listener's two sessions would share their draws.
    """
    index = int(streams.uniform_scalar(key, user, previous, RETURN_ID) * RETURN_INDEX)
    return (int(comeback // DAY_S) + 1) * SESSION_ID_DAY + RETURN_INDEX + index


class Batcher:
    """Gathers the listeners' messages over one window of simulated time and serves them at once."""

    def __init__(self, env: simpy.Environment, client: Client, model: ListenerModel, window_s: float) -> None:
        self.env, self.client, self.model, self.window_s = env, client, model, window_s
        self._pending: list[tuple[int, Item, simpy.Event]] = []
        self.served = 0
        self.batches = 0

    def ask(self, slot: int, item: Item) -> simpy.Event:
        """Queue `item` from the session in `slot`; the event yields (track, fraction, ended) for 'next'."""
        event = self.env.event()
        if not self._pending:
            self.env.process(self._flush_later())
        self._pending.append((slot, item, event))
        return event

    def _flush_later(self) -> Generator[simpy.Event, None, None]:
        yield self.env.timeout(self.window_s)
        pending, self._pending = self._pending, []
        answers = self.client.serve([item for _, item, _ in pending])
        self.served += len(pending)
        self.batches += 1
        asked = [i for i, (_, item, _) in enumerate(pending) if item.message == NEXT]
        if asked:
            slots = np.array([pending[i][0] for i in asked])
            tracks = np.array([answers[i] for i in asked], dtype=np.int64)
            fractions, ended = self.model.respond(tracks, slots)
            for j, i in enumerate(asked):
                pending[i][2].succeed((int(tracks[j]), float(fractions[j]), bool(ended[j])))
        for _, item, event in pending:
            if item.message == LAST:
                event.succeed(None)


class Timeline:
    """One shard's simulated world over consecutive days, against one client."""

    def __init__(
        self,
        world: World,
        config: EnvConfig,
        client: Client,
        seed: int,
        *,
        shard: int = 0,
        n_shards: int = 1,
        on_session: Callable[[SessionRecord], None] | None = None,
    ) -> None:
        self.world, self.config, self.client = world, config, client
        self.key = streams.key_from_seed(seed)
        self.shard, self.n_shards = shard, n_shards
        self.env = simpy.Environment()
        self.model = ListenerModel.from_options(world, 256, self.key, config.listener)
        self.batcher = Batcher(self.env, client, self.model, config.time.batch_window_s)
        self.records: list[SessionRecord] = []
        self._on_session = on_session
        self._free = list(range(self.model.n_slots - 1, -1, -1))
        self._active = 0
        self._carried: list[tuple[float, int, int]] = []  # returns due on later days: (time, user, session)
        self._epoch_ms = int(datetime.combine(config.time.start, time(), tzinfo=UTC).timestamp() * 1000)
        self._duration = world.catalog.duration.astype(np.float64)
        self._day_end = 0.0
        self._idle: simpy.Event | None = None

    def run_day(self, day: int, episodes: int) -> list[SessionRecord]:
        """Simulate day `day` (1-based) with `episodes` arrivals in total (this shard's share of
        them); returns the records of the sessions that started that day."""
        first_record = len(self.records)
        self._day_end = day * DAY_S
        sessions, users, arrivals = plan_day(self.key, day, episodes, self.world.n_users, self.config, self.shard, self.n_shards)
        due = [c for c in self._carried if c[0] < self._day_end]
        self._carried = [c for c in self._carried if c[0] >= self._day_end]
        if self.env.now < (day - 1) * DAY_S:
            self.env.run(until=(day - 1) * DAY_S)
        for session, user, arrival in zip(sessions.tolist(), users.tolist(), arrivals.tolist()):
            self._launch(session, user, arrival, returning=False)
        for arrival, user, session in due:
            self._launch(session, user, arrival, returning=True)
        if self._active:
            self._idle = self.env.event()
            self.env.run(until=self._idle)
        return self.records[first_record:]

    def _launch(self, session: int, user: int, arrival: float, returning: bool) -> None:
        self._active += 1
        self.env.process(self._session(session, user, arrival, returning))

    def _ms(self, t: float) -> int:
        return self._epoch_ms + int(round(t * 1000.0))

    def _session(self, session: int, user: int, arrival: float, returning: bool) -> Generator[simpy.Event, object, None]:
        """A listener arrives, plays their own first track, asks for more until they leave."""
        yield self.env.timeout(max(0.0, arrival - self.env.now))
        slot = self._take_slot()
        track = int(self.model.start(np.array([slot]), np.array([user]), np.array([session]))[0])
        clock, fraction = arrival, 1.0
        tracks, total, listened = 0, 0.0, 0.0
        while True:
            answer = yield self.batcher.ask(slot, Item(NEXT, user, track, fraction, session, self._ms(clock)))
            track, fraction, ended = cast(tuple[int, float, bool], answer)
            seconds = fraction * float(self._duration[track])
            tracks, total, listened, clock = tracks + 1, total + fraction, listened + seconds, clock + seconds
            yield self.env.timeout(max(0.0, clock - self.env.now))
            if ended or self.model.step[slot] >= self.model.max_steps:
                yield self.batcher.ask(slot, Item(LAST, user, track, fraction, session, self._ms(clock)))
                break
        self._free.append(slot)
        day = int(arrival // DAY_S) + 1
        record = SessionRecord(day, user, session, tracks, total, listened, self._ms(arrival), self._ms(clock), returning)
        self.records.append(record)
        if self._on_session is not None:
            self._on_session(record)
        if self.config.returns.enabled:
            self._schedule_return(record, clock)
        self._active -= 1
        if self._active == 0 and self._idle is not None and not self._idle.triggered:
            self._idle.succeed()

    def _schedule_return(self, record: SessionRecord, clock: float) -> None:
        """Return hazard (per day): base_rate * exp(sensitivity * (time - reference)); exponential wait."""
        options = self.config.returns
        rate = options.base_rate_per_day * math.exp(options.sensitivity * (record.time - options.reference)) / DAY_S
        u = streams.uniform_scalar(self.key, record.user, record.session, RETURN)
        comeback = clock - math.log1p(-u) / rate
        session = return_session(self.key, record.user, record.session, comeback)
        if comeback < self._day_end:
            self._launch(session, record.user, comeback, returning=True)
        else:
            self._carried.append((comeback, record.user, session))

    def _take_slot(self) -> int:
        if not self._free:
            old = self.model.n_slots
            self.model.grow(2 * old)
            self._free.extend(range(2 * old - 1, old - 1, -1))
        return self._free.pop()
