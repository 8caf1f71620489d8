"""The per-session SimPy loop that `sim.run.timeline.Timeline` replaced, kept as its reference.

One SimPy process per session and a batcher process per window: the definition of the event
order the vectorised scheduler must reproduce (tests/sim/run/test_timeline_equivalence.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from datetime import UTC, datetime, time
from typing import cast

import numpy as np
import simpy

from sim import streams
from sim.config import EnvConfig
from sim.listener import ListenerModel
from sim.run.clients import LAST, NEXT, Client, Item
from sim.run.timeline import DAY_S, RETURN, SessionRecord, plan_day, return_session
from sim.world import World


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


class SimpyTimeline:
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
