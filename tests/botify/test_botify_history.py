"""Listen-history stores: the memory one and the Redis one behave the same."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from botify.config import ConfigError
from botify.history import KEY_PREFIX, SESSION_BYTES, STEP_BYTES, History, MemoryHistory, RedisHistory, Step, mask_url, service_namespace


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[MemoryHistory | RedisHistory]:
    if request.param == "memory":
        yield MemoryHistory(max_length=4)
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield RedisHistory(url, max_length=4, ttl=60)
    client.flushdb()
    client.close()


def step(user: int, track: int, time: float = 0.5, session: int | None = None, end: bool = False) -> Step:
    return Step(user, session, track, time, end)


def test_steps_append_and_return_the_session_so_far(store: MemoryHistory | RedisHistory) -> None:
    out = store.update([step(1, 10, 1.0), step(1, 11, 0.25)])

    assert out == [History((10,), (1.0,)), History((10, 11), (1.0, 0.25))]


def test_end_drops_the_session(store: MemoryHistory | RedisHistory) -> None:
    store.update([step(1, 10), step(1, 11)])

    out = store.update([step(1, 11, end=True), step(1, 12)])

    assert out == [None, History((12,), (0.5,))]


def test_users_and_sessions_are_apart(store: MemoryHistory | RedisHistory) -> None:
    store.update([step(1, 10), step(2, 20), step(1, 30, session=7)])

    out = store.update([step(1, 11), step(2, 21), step(1, 31, session=7), step(1, 41, session=8)])

    assert [h.tracks for h in out if h] == [(10, 11), (20, 21), (30, 31), (41,)]


def test_only_the_most_recent_tracks_are_kept(store: MemoryHistory | RedisHistory) -> None:
    out = store.update([step(1, t) for t in range(6)])

    assert out[-1] is not None and out[-1].tracks == (2, 3, 4, 5)


def test_times_survive_exactly(store: MemoryHistory | RedisHistory) -> None:
    times = [0.1, 1 / 3, 0.0, 1.0]

    out = store.update([step(1, t, time=x) for t, x in enumerate(times)])

    assert out[-1] is not None and out[-1].times == tuple(times)


def test_memory_store_drops_the_least_recently_used_session() -> None:
    store = MemoryHistory(max_length=10, max_sessions=2)
    store.update([step(1, 10), step(2, 20), step(1, 11), step(3, 30)])

    assert len(store) == 2
    assert store.update([step(2, 21)])[0] == History((21,), (0.5,))


def test_steps_of_sessions_already_held_evict_when_they_cross_the_byte_bound() -> None:
    """A batch that starts no session can still cross `max_bytes` by its steps alone: the least
    recently used session goes at the step that crosses it, not at the next batch."""
    store = MemoryHistory(max_length=10, max_bytes=2 * SESSION_BYTES + 3 * STEP_BYTES)
    store.update([step(1, 10), step(2, 20)])

    store.update([step(2, 21), step(1, 11), step(1, 12)])  # (1, 11) crosses the bound

    assert len(store) == 1 and store.bytes == SESSION_BYTES + 3 * STEP_BYTES
    assert store.update([step(2, 22)])[0] == History((22,), (0.5,))  # session 2 was dropped, not session 1


def test_redis_holds_plain_strings_with_an_expiry(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    RedisHistory(redis_url, ttl=60).update([step(9, 10, 0.25, session=3)])

    key = f"{KEY_PREFIX}9:3"
    assert client.lrange(key, 0, -1) == [b"10:0.25"]
    assert 0 < client.ttl(key) <= 60
    client.close()


def test_redis_store_recovers_from_a_flushed_script_and_a_dropped_connection(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    store = RedisHistory(redis_url, ttl=60)
    store.update([step(1, 10)])

    client.script_flush()  # as after a Redis restart: the script must be loaded again
    assert store.update([step(1, 11)])[0] == History((10, 11), (0.5, 0.5))

    client.client_kill_filter(_type="normal", skipme=True)  # drops the store's connection
    assert store.update([step(1, 12)])[0] == History((10, 11, 12), (0.5, 0.5, 0.5))

    store.close()
    client.close()


def test_redis_store_gives_each_thread_its_own_connection(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    store = RedisHistory(redis_url, max_length=100, ttl=60)
    users = range(8)
    barrier = threading.Barrier(len(users))

    def listen(user: int) -> list[History | None]:
        barrier.wait()
        out = [store.update([step(user, 1000 * user + i)])[0] for i in range(20)]
        connections.append(id(store._connection()))
        return out

    connections: list[int] = []
    with ThreadPoolExecutor(len(users)) as pool:
        results = list(pool.map(listen, users))

    for user, histories in zip(users, results, strict=True):
        assert histories[-1] == History(tuple(1000 * user + i for i in range(20)), (0.5,) * 20)
    assert len(set(connections)) == len(users)
    client.close()


def test_redis_store_opens_a_fresh_connection_in_a_forked_worker(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    store = RedisHistory(redis_url, ttl=60)
    store.update([step(1, 10)])  # the parent's connection, open before the fork
    parents = store._connection()

    pid = os.fork()
    if pid == 0:  # the worker: must not share the parent's socket
        ok = False
        try:
            ok = store._connection() is not parents and store.update([step(2, 20)])[0] == History((20,), (0.5,))
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert store.update([step(1, 11)])[0] == History((10, 11), (0.5, 0.5))
    client.close()


def test_memory_store_stays_within_its_byte_budget() -> None:
    import tracemalloc

    budget = 2_000_000
    store = MemoryHistory(max_length=200, max_sessions=10**9, max_bytes=budget)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for user in range(400):  # 400 sessions of 100 steps: about 3 MB, beyond the budget
        store.update([step(user, 1000 + i, 0.1 + i / 1000) for i in range(100)])
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()

    assert store.bytes <= budget
    assert len(store) < 400  # old sessions went
    # The estimate tracks what CPython really holds (within 10% on 3.11), so the budget is real.
    assert used <= 1.1 * budget
    assert store.update([step(399, 7)])[0].tracks[-2:] == (1099, 7)  # the most recent session stayed


def test_services_of_different_worlds_or_experiments_keep_apart_on_one_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    first = RedisHistory(redis_url, ttl=60, namespace=service_namespace("world-a", "experiments-1"))
    other_world = RedisHistory(redis_url, ttl=60, namespace=service_namespace("world-b", "experiments-1"))
    other_experiments = RedisHistory(redis_url, ttl=60, namespace=service_namespace("world-a", "experiments-2"))
    first.update([step(1, 10), step(1, 11)])

    assert other_world.update([step(1, 20)])[0] == History((20,), (0.5,))
    assert other_experiments.update([step(1, 30, end=True)]) == [None]  # ends its own session only
    assert first.update([step(1, 12)])[0] == History((10, 11, 12), (0.5, 0.5, 0.5))
    assert len({key.rsplit(b":", 2)[0] for key in client.keys("*")}) == 2  # one namespace per service with a session left
    client.close()


def test_a_redis_password_never_appears_in_a_message() -> None:
    url = "redis://admin:s3cr3t-pw@127.0.0.1:1/0"

    with pytest.raises(ConfigError) as caught:
        RedisHistory(url).check()

    assert "s3cr3t-pw" not in str(caught.value)
    assert "redis://admin:***@127.0.0.1:1/0" in str(caught.value)
    assert mask_url("redis://:pw@[::1]:6390/2") == "redis://:***@[::1]:6390/2"
    assert mask_url("redis://127.0.0.1:6390/0") == "redis://127.0.0.1:6390/0"


def test_columns_give_the_histories_of_steps(store: MemoryHistory | RedisHistory) -> None:
    """`update_columns` applies steps as `update` does (a session twice in one batch, an end, a
    restart) and cuts the same histories out of its flat arrays."""
    steps = [step(1, 10, session=5), step(2, 20), step(1, 11, 0.25, session=5), step(2, 21, end=True), step(2, 22), step(1, 12, session=6)]
    columns = store.update_columns(*(list(column) for column in zip(*steps, strict=True)))
    expected = [History((10,), (0.5,)), History((20,), (0.5,)), History((10, 11), (0.5, 0.25)), None, History((22,), (0.5,)), History((12,), (0.5,))]
    assert MemoryHistory(max_length=4).update(steps) == expected
    offsets = columns.offsets.tolist()
    got = [
        History(tuple(columns.tracks[a:b].tolist()), tuple(columns.times[a:b].tolist())) if not s.end else None
        for s, a, b in zip(steps, offsets, offsets[1:], strict=False)
    ]
    assert got == expected
