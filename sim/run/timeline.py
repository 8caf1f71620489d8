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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import NamedTuple

import numpy as np

from botify.batch import ItemBatch
from sim import streams
from sim.config import EnvConfig
from sim.env import pick_users
from sim.listener import ListenerModel
from sim.run.clients import Client, ColumnarClient
from sim.world import World

DAY_S = 86_400.0  # seconds
SESSION_ID_DAY = 1 << 32  # session id = day * SESSION_ID_DAY + index within the day
RETURN_INDEX = 1 << 31  # indices from here on are returning listeners' sessions
ARRIVAL = 101  # stream purposes of the runner (the listener model's are in sim.streams)
RETURN = 102
RETURN_ID = 103  # the within-day index of a returning session
_RHYTHM_GRID = 1_441  # points of the tabulated arrival-time distribution (one per minute)


class SessionRecord(NamedTuple):
    """What the simulator saw of one session (the ground truth for checking the event log).

    A named tuple rather than a frozen dataclass: a run makes one per session, and a tuple is
    the cheapest record to build.
    """

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


class Timeline:
    """One shard's simulated world over consecutive days, against one client.

    The scheduler steps every session that asks within one batch window together: one call to
    the client and one pass of the listener model per window, with numpy over the sessions'
    state, instead of one SimPy process per session. It reproduces the event order of the
    per-session SimPy loop it replaced exactly (the tests keep that loop as the reference):

    - a session asks at simulated time `max(its clock, the time it was answered)`: a session
      whose clock lags the batch that answered it asks at once, when that batch is answered;
    - a batch is sent `batch_window_s` after the first request that finds no batch open, and
      holds every request made up to then, in the order made (time, then the order in which
      the requests were scheduled: the answered `next`s in batch order, then the returns
      launched by the batch's `last`s);
    - times are computed with the same floating-point operations (`now + max(0, t - now)`).
    """

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
        self._columnar = isinstance(client, ColumnarClient)  # answers columns: no `Item` per request
        self.key = streams.key_from_seed(seed)
        self.shard, self.n_shards = shard, n_shards
        self.model = ListenerModel.from_options(world, 256, self.key, config.listener)
        self.window_s = config.time.batch_window_s
        self.records: list[SessionRecord] = []
        self.served = 0  # items sent to the client
        self.batches = 0  # calls to the client
        self._on_session = on_session
        self._free = list(range(self.model.n_slots - 1, -1, -1))
        self._carried: list[tuple[float, int, int]] = []  # returns due on later days: (time, user, session)
        self._epoch_ms = int(datetime.combine(config.time.start, time(), tzinfo=UTC).timestamp() * 1000)
        self._duration = world.catalog.duration.astype(np.float64)
        self._day_end = 0.0
        self._now = 0.0  # simulated time of the last answered batch (or of the day's start)
        self._seq = 0  # scheduling order: breaks ties between requests made at the same time
        self._slots = _Slots(self.model.n_slots)
        self._launches = _Launches()

    def run_day(self, day: int, episodes: int) -> list[SessionRecord]:
        """Simulate day `day` (1-based) with `episodes` arrivals in total (this shard's share of
        them); returns the records of the sessions that started that day."""
        first_record = len(self.records)
        self._day_end = day * DAY_S
        sessions, users, arrivals = plan_day(self.key, day, episodes, self.world.n_users, self.config, self.shard, self.n_shards)
        due = [c for c in self._carried if c[0] < self._day_end]
        self._carried = [c for c in self._carried if c[0] >= self._day_end]
        self._now = max(self._now, (day - 1) * DAY_S)
        self._launch(sessions, users, arrivals.astype(np.float64), returning=False)
        if due:
            self._launch(
                np.array([c[2] for c in due], dtype=np.int64), np.array([c[1] for c in due], dtype=np.int64),
                np.array([c[0] for c in due], dtype=np.float64), returning=True,
            )
        while len(self._launches) or self._slots.waiting.any():
            self._serve_window()
        return self.records[first_record:]

    def _launch(self, sessions: np.ndarray, users: np.ndarray, arrivals: np.ndarray, returning: bool) -> None:
        """Sessions that will arrive at `arrivals` (s), launched now: they first ask at `now + max(0, arrival - now)`."""
        now = self._now
        asks = now + np.maximum(0.0, arrivals - now)
        seq = self._seq + np.arange(len(sessions), dtype=np.int64)
        self._seq += len(sessions)
        self._launches.add(asks, seq, sessions, users, arrivals, np.full(len(sessions), returning))

    def _ms(self, t: np.ndarray) -> np.ndarray:
        return self._epoch_ms + np.rint(t * 1000.0).astype(np.int64)

    def _serve_window(self) -> None:
        """Gather the requests of one window, serve them in one call, let the listeners respond."""
        s = self._slots
        waiting = np.flatnonzero(s.waiting)
        first = min(float(s.ask[waiting].min()) if len(waiting) else math.inf, self._launches.first())
        flush = first + self.window_s
        asking = waiting[s.ask[waiting] <= flush]
        arrived = self._launches.take(flush)
        new_slots = self._start(arrived)
        slots = np.concatenate([asking, new_slots])
        order = np.lexsort((s.seq[slots], s.ask[slots]))
        slots = slots[order]
        s.waiting[slots] = False
        self._now = flush

        last = s.last[slots]
        batch = ItemBatch(last, self.model.user[slots], s.track[slots], s.fraction[slots], s.session[slots].tolist(), self._ms(s.clock[slots]).tolist())
        asked = np.flatnonzero(~last)
        if self._columnar:
            tracks = self.client.serve_batch(batch)[asked]  # type: ignore[attr-defined]
        else:
            answers = self.client.serve(batch.items())
            tracks = np.array([answers[i] for i in asked.tolist()], dtype=np.int64)
        self.served += len(slots)
        self.batches += 1

        if len(asked):
            ask_slots = slots[asked]
            fractions, ended = self.model.respond(tracks, ask_slots)
            seconds = fractions * self._duration[tracks]
            s.tracks[ask_slots] += 1
            s.total[ask_slots] += fractions
            s.listened[ask_slots] += seconds
            clock = s.clock[ask_slots] + seconds
            s.clock[ask_slots] = clock
            s.track[ask_slots] = tracks
            s.fraction[ask_slots] = fractions
            s.ask[ask_slots] = flush + np.maximum(0.0, clock - flush)
            s.seq[ask_slots] = self._seq + np.arange(len(ask_slots), dtype=np.int64)
            self._seq += len(ask_slots)
            s.last[ask_slots] = ended | (self.model.step[ask_slots] >= self.model.max_steps)
            s.waiting[ask_slots] = True
        returns: list[tuple[int, int, float]] = []
        self._end(slots[last], returns)
        if returns:  # launched in the order of the 'last's that ended their sessions
            session, user, comeback = zip(*returns, strict=True)
            self._launch(np.array(session, dtype=np.int64), np.array(user, dtype=np.int64), np.array(comeback), returning=True)

    def _start(self, arrived: _Arrivals) -> np.ndarray:
        """Give each arrived session a slot and its first track (its own choice)."""
        n = len(arrived.session)
        if not n:
            return np.zeros(0, dtype=np.int64)
        while len(self._free) < n:
            old = self.model.n_slots
            self.model.grow(2 * old)
            self._slots.grow(2 * old)
            self._free.extend(range(2 * old - 1, old - 1, -1))
        slots = np.array([self._free.pop() for _ in range(n)], dtype=np.int64)
        s = self._slots
        s.track[slots] = self.model.start(slots, arrived.user, arrived.session)
        s.fraction[slots] = 1.0
        s.session[slots] = arrived.session
        s.arrival[slots] = arrived.arrival
        s.clock[slots] = arrived.arrival
        s.returning[slots] = arrived.returning
        s.tracks[slots] = 0
        s.total[slots] = 0.0
        s.listened[slots] = 0.0
        s.last[slots] = False
        s.ask[slots] = arrived.ask
        s.seq[slots] = arrived.seq
        return slots

    def _end(self, slots: np.ndarray, returns: list[tuple[int, int, float]]) -> None:
        """The sessions in `slots` have said 'last', in this order: record each, free its slot, maybe
        schedule a return (appended to `returns` as (session, user, time) when it falls on this day)."""
        if not len(slots):
            return
        s, epoch_ms = self._slots, self._epoch_ms
        returns_enabled, on_session = self.config.returns.enabled, self._on_session
        columns = zip(
            slots.tolist(), s.arrival[slots].tolist(), s.clock[slots].tolist(), self.model.user[slots].tolist(), s.session[slots].tolist(),
            s.tracks[slots].tolist(), s.total[slots].tolist(), s.listened[slots].tolist(), s.returning[slots].tolist(), strict=True,
        )  # fmt: skip
        for slot, arrival, clock, user, session, tracks, total, listened, returning in columns:
            record = SessionRecord(
                int(arrival // DAY_S) + 1, user, session, tracks, total, listened,
                epoch_ms + int(round(arrival * 1000.0)), epoch_ms + int(round(clock * 1000.0)), returning,
            )  # fmt: skip
            self._free.append(slot)
            self.records.append(record)
            if on_session is not None:
                on_session(record)
            if returns_enabled:
                self._schedule_return(record, clock, returns)

    def _schedule_return(self, record: SessionRecord, clock: float, returns: list[tuple[int, int, float]]) -> None:
        """Return hazard (per day): base_rate * exp(sensitivity * (time - reference)); exponential wait."""
        options = self.config.returns
        rate = options.base_rate_per_day * math.exp(options.sensitivity * (record.time - options.reference)) / DAY_S
        u = streams.uniform_scalar(self.key, record.user, record.session, RETURN)
        comeback = clock - math.log1p(-u) / rate
        session = return_session(self.key, record.user, record.session, comeback)
        if comeback < self._day_end:
            returns.append((session, record.user, comeback))
        else:
            self._carried.append((comeback, record.user, session))


class _Slots:
    """Per-slot state of the sessions in progress (the listener model holds the rest)."""

    def __init__(self, n: int) -> None:
        self.session = np.zeros(n, dtype=np.int64)
        self.track = np.zeros(n, dtype=np.int64)  # the track just played (the next request's `track`)
        self.fraction = np.zeros(n)  # the fraction of it listened
        self.arrival = np.zeros(n)
        self.clock = np.zeros(n)  # the session's own time, s
        self.returning = np.zeros(n, dtype=bool)
        self.tracks = np.zeros(n, dtype=np.int64)
        self.total = np.zeros(n)
        self.listened = np.zeros(n)
        self.ask = np.zeros(n)  # simulated time of the pending request
        self.seq = np.zeros(n, dtype=np.int64)  # its scheduling order
        self.last = np.zeros(n, dtype=bool)  # whether it is the session's 'last'
        self.waiting = np.zeros(n, dtype=bool)  # whether a request is pending

    def grow(self, n: int) -> None:
        for name, array in list(vars(self).items()):
            setattr(self, name, np.concatenate([array, np.zeros(n - len(array), dtype=array.dtype)]))


@dataclass
class _Arrivals:
    """Sessions launched but not yet arrived: when each first asks, in which order, who and since when."""

    ask: np.ndarray
    seq: np.ndarray
    session: np.ndarray
    user: np.ndarray
    arrival: np.ndarray
    returning: np.ndarray


class _Launches:
    """The launched sessions, kept sorted by first request; `take` removes those due by a time."""

    def __init__(self) -> None:
        empty = np.zeros(0)
        self._pending = _Arrivals(empty, empty.astype(np.int64), empty.astype(np.int64), empty.astype(np.int64), empty, empty.astype(bool))
        self._head = 0  # the first not yet taken

    def __len__(self) -> int:
        return len(self._pending.ask) - self._head

    def add(self, ask: np.ndarray, seq: np.ndarray, session: np.ndarray, user: np.ndarray, arrival: np.ndarray, returning: np.ndarray) -> None:
        p, h = self._pending, self._head
        merged = [np.concatenate([getattr(p, name)[h:], new]) for name, new in
                  (("ask", ask), ("seq", seq), ("session", session), ("user", user), ("arrival", arrival), ("returning", returning))]
        order = np.lexsort((merged[1], merged[0]))
        self._pending = _Arrivals(*(array[order] for array in merged))
        self._head = 0

    def first(self) -> float:
        return float(self._pending.ask[self._head]) if len(self) else math.inf

    def take(self, until: float) -> _Arrivals:
        p, h = self._pending, self._head
        end = int(np.searchsorted(p.ask, until, side="right"))
        end = max(end, h)
        self._head = end
        return _Arrivals(p.ask[h:end], p.seq[h:end], p.session[h:end], p.user[h:end], p.arrival[h:end], p.returning[h:end])
