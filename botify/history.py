"""Listen history: the tracks (and fractions listened) of every session in flight.

A recommender sees the session so far (`Request.history` / `Request.times`). A session is
identified by (user, session id); clients that send no session id (the course's) have one
session per user at a time. `/last` ends a session and drops its history, and a new session id
starts an empty one. Each step appends the track just played and returns the history up to
and including it, so two steps of one session in one batch see what a sequence of single
requests would see.

Two stores: `MemoryHistory` (one process; the single-worker default, bounded in bytes) and
`RedisHistory` (shared by every worker). Redis holds plain strings "track:time" in one list per
session, never pickles; one Lua script call serves a whole batch in a single round trip. Its keys
carry the service's identity (`service_namespace`: the world and the experiments), so two services
with different worlds or experiments on one Redis database never share or delete each other's
sessions. A Redis URL's password never appears in a message (`mask_url`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from botify.config import ConfigError, HistoryConfig

if TYPE_CHECKING:
    import redis

KEY_PREFIX = "botify:h:"
# Estimated bytes a memory-store session costs (CPython 3.11, 64-bit): the key tuple, the two
# lists and the OrderedDict entry; and each step: two list slots, an int and a float.
SESSION_BYTES = 400
STEP_BYTES = 72


def service_namespace(world_fingerprint: str, experiments: str, seed: int = 0) -> str:
    """A short hash of what a service serves (its world, its experiments' configuration, its
    seed), the part of its Redis keys that keeps other services' sessions apart."""
    text = f"{world_fingerprint}\n{experiments}\n{seed}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mask_url(url: str) -> str:
    """`url` with its password (if any) replaced by `***`, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    except ValueError:  # not a URL we can take apart: say nothing of it
        return "<the configured URL>"


def _mask_secret(text: str, url: str) -> str:
    """`text` with every occurrence of `url` and of its password masked."""
    text = text.replace(url, mask_url(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


class Step(NamedTuple):
    """One served request as the history sees it: append (track, time), or end the session."""

    user: int
    session: int | None
    track: int
    time: float
    end: bool


class History(NamedTuple):
    """A session's history: tracks oldest first, and the fraction listened of each."""

    tracks: tuple[int, ...]
    times: tuple[float, ...]


class Histories(NamedTuple):
    """The histories of a batch of steps as columns: step i's tracks are `tracks[offsets[i]:offsets[i + 1]]`
    (empty for a step that ends its session), and `times` their fractions listened."""

    tracks: np.ndarray  # int64
    times: np.ndarray  # float64
    offsets: np.ndarray  # int64, shape (steps + 1,)

    @classmethod
    def of(cls, histories: Sequence[History | None]) -> Histories:
        """The columns of `update`'s answer."""
        lengths = [0 if h is None else len(h.tracks) for h in histories]
        offsets = np.zeros(len(histories) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tracks = [t for h in histories if h is not None for t in h.tracks]
        times = [t for h in histories if h is not None for t in h.times]
        return cls(np.array(tracks, dtype=np.int64).reshape(len(tracks)), np.array(times, dtype=np.float64).reshape(len(times)), offsets)


class HistoryStore(Protocol):
    """What the service needs from a store: apply steps in order and return each one's history."""

    def update(self, steps: Sequence[Step]) -> list[History | None]:
        """Apply `steps` in order; a step that ends its session gets None."""
        ...

    def update_columns(self, users: list[int], sessions: list[int | None], tracks: list[int], times: list[float], ends: list[bool]) -> Histories:
        """`update` of the steps given as columns, with the histories as columns."""
        ...

    def check(self) -> None:
        """Raise `ConfigError` with a clear message when the store cannot be used."""
        ...


class MemoryHistory:
    """In-process store: a dict of sessions, least recently used dropped beyond `max_sessions`
    or beyond `max_bytes` (estimated: `SESSION_BYTES` per session plus `STEP_BYTES` per step)."""

    def __init__(self, max_length: int = 200, max_sessions: int = 1_000_000, max_bytes: int = 2 << 30) -> None:
        self.max_length = max_length
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self.bytes = 0  # the estimate of what the sessions hold now
        self._sessions: OrderedDict[tuple[int, int | None], tuple[list[int], list[float]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def check(self) -> None:
        return None

    def update(self, steps: Sequence[Step]) -> list[History | None]:
        lengths, tracks, times = self._apply([s.user for s in steps], [s.session for s in steps], [s.track for s in steps],
                                             [s.time for s in steps], [s.end for s in steps])  # fmt: skip
        out: list[History | None] = []
        stop = 0
        for step, length in zip(steps, lengths, strict=True):
            start, stop = stop, stop + length
            out.append(None if step.end else History(tuple(tracks[start:stop]), tuple(times[start:stop])))
        return out

    def update_columns(self, users: list[int], sessions: list[int | None], tracks: list[int], times: list[float], ends: list[bool]) -> Histories:
        lengths, flat_tracks, flat_times = self._apply(users, sessions, tracks, times, ends)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return Histories(np.array(flat_tracks, dtype=np.int64), np.array(flat_times, dtype=np.float64), offsets)

    def _apply(
        self, users: list[int], sessions: list[int | None], tracks: list[int], times: list[float], ends: list[bool]
    ) -> tuple[list[int], list[int], list[float]]:
        """Apply the steps (user, session, track, time, end) in order; returns each step's history
        length (0 for an end) and every step's history (tracks, then times) one after another."""
        lengths: list[int] = []
        flat_tracks: list[int] = []
        flat_times: list[float] = []
        add_length = lengths.append
        store = self._sessions
        get, pop, move_to_end = store.get, store.pop, store.move_to_end
        max_length, max_sessions, max_bytes = self.max_length, self.max_sessions, self.max_bytes
        with self._lock:
            size = self.bytes
            # The most the steps can add (each one a new session's first, no end among them): within
            # both bounds, no step can evict, so the steps skip the bounds' check.
            steps = len(ends) - ends.count(True)
            may_evict = size + steps * (SESSION_BYTES + STEP_BYTES) > max_bytes or len(store) + steps > max_sessions
            try:
                for key, track, time, end in zip(zip(users, sessions), tracks, times, ends, strict=True):
                    if end:
                        entry = pop(key, None)
                        if entry is not None:
                            size -= SESSION_BYTES + STEP_BYTES * len(entry[0])
                        add_length(0)
                        continue
                    entry = get(key)
                    if entry is None:
                        entry = store[key] = ([], [])
                        size += SESSION_BYTES
                    else:
                        move_to_end(key)
                    played, listened = entry
                    played.append(track)
                    listened.append(time)
                    if len(played) > max_length:
                        del played[0], listened[0]
                    else:
                        size += STEP_BYTES
                    while may_evict and (size > max_bytes or len(store) > max_sessions) and len(store) > 1:
                        _, (old_tracks, _) = store.popitem(last=False)
                        size -= SESSION_BYTES + STEP_BYTES * len(old_tracks)
                    flat_tracks += played
                    flat_times += listened
                    add_length(len(played))
            finally:  # the estimate stays true whatever stops the loop
                self.bytes = size
        return lengths, flat_tracks, flat_times


# KEYS: one history key per step. ARGV[1]: ttl (s), ARGV[2]: max length, ARGV[2 + i]: step i's
# "track:time" entry, or "" to end that session. Returns one list per step (empty when ended).
_UPDATE_SCRIPT = """
local ttl = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
    local entry = ARGV[2 + i]
    if entry == '' then
        redis.call('DEL', key)
        out[i] = {}
    else
        local n = redis.call('RPUSH', key, entry)
        if n > keep then redis.call('LTRIM', key, -keep, -1) end
        redis.call('EXPIRE', key, ttl)
        out[i] = redis.call('LRANGE', key, 0, -1)
    end
end
return out
"""


def _parse(entries: list[bytes]) -> History:
    tracks = []
    times = []
    for entry in entries:
        track, _, time = entry.partition(b":")
        tracks.append(int(track))
        times.append(float(time))
    return History(tuple(tracks), tuple(times))


class RedisHistory:
    """Store shared by every worker: one Redis list of "track:time" strings per session.

    Each request thread keeps one connection of its own and sends the update script by its
    SHA1 (EVALSHA), loading it on first use: one round trip per request or batch, without the
    client's per-call pool and retry machinery, which costs as much as the round trip itself.
    Connections are opened lazily per process (a forked worker never reuses its parent's).
    """

    def __init__(self, url: str, max_length: int = 200, ttl: int = 3600, namespace: str = "") -> None:
        self.url = url
        self.max_length = max_length
        self.ttl = ttl
        self.prefix = f"{KEY_PREFIX}{namespace}:" if namespace else KEY_PREFIX
        self._sha = hashlib.sha1(_UPDATE_SCRIPT.encode(), usedforsecurity=False).hexdigest()  # the name Redis gives it
        self._pool: redis.ConnectionPool | None = None
        self._pool_pid = 0
        self._local = threading.local()
        self._lock = threading.Lock()

    def _connection(self) -> redis.connection.AbstractConnection:
        import redis  # imported here: the in-process store (and `sim.run local:`) does without it

        local = self._local
        pid = os.getpid()
        if getattr(local, "pid", None) == pid:
            return local.connection
        with self._lock:
            if self._pool is None or self._pool_pid != pid:
                self._pool = redis.ConnectionPool.from_url(self.url, socket_timeout=5.0, socket_connect_timeout=2.0)
                self._pool_pid = pid
            connection = self._pool.make_connection()
        local.connection, local.pid = connection, pid
        return connection  # type: ignore[return-value]  # redis types make_connection loosely

    def check(self) -> None:
        import redis

        try:
            client = redis.Redis.from_url(self.url, socket_timeout=2.0, socket_connect_timeout=2.0)
            client.ping()
            client.close()
        except (redis.RedisError, ValueError) as error:
            raise ConfigError(
                f"history.redis_url: cannot reach Redis at {mask_url(self.url)} ({_mask_secret(str(error), self.url)}); "
                "start one with `scripts/redis.sh start` or use history.store: memory with one worker"
            ) from None

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid == os.getpid():
            connection.disconnect()
        self._local.__dict__.clear()

    def update(self, steps: Sequence[Step]) -> list[History | None]:
        if not steps:
            return []
        command: list[object] = ["EVALSHA", self._sha, len(steps)]
        command.extend(f"{self.prefix}{step.user}:{'' if step.session is None else step.session}" for step in steps)
        command.extend((self.ttl, self.max_length))
        command.extend("" if step.end else f"{step.track}:{step.time!r}" for step in steps)
        results = self._call(command)
        return [None if step.end else _parse(entries) for step, entries in zip(steps, results, strict=True)]

    def update_columns(self, users: list[int], sessions: list[int | None], tracks: list[int], times: list[float], ends: list[bool]) -> Histories:
        return Histories.of(self.update([Step(*step) for step in zip(users, sessions, tracks, times, ends, strict=True)]))

    def _call(self, command: list[object]) -> list[list[bytes]]:
        import redis

        connection = self._connection()
        try:
            return self._execute(connection, command)
        except redis.ConnectionError:
            # A connection that Redis dropped (a restart, an idle timeout): reconnect once. The
            # lost command almost surely never ran; redis-py's own retries make the same bet.
            connection.disconnect()
            return self._execute(connection, command)

    @staticmethod
    def _execute(connection: redis.connection.AbstractConnection, command: list[object]) -> list[list[bytes]]:
        import redis

        try:
            connection.send_command(*command)
            return connection.read_response()
        except redis.exceptions.NoScriptError:  # first use, or Redis restarted: load, then retry
            connection.send_command("SCRIPT", "LOAD", _UPDATE_SCRIPT)
            connection.read_response()
            connection.send_command(*command)
            return connection.read_response()


def make_history(config: HistoryConfig, namespace: str = "") -> MemoryHistory | RedisHistory:
    """The store `config` asks for (not yet connected); `namespace` (see `service_namespace`) goes into Redis keys."""
    if config.store == "redis":
        return RedisHistory(config.redis_url, config.max_length, config.ttl, namespace)
    return MemoryHistory(config.max_length, config.max_sessions, config.max_bytes)
