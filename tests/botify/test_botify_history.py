"""Listen-history stores: the memory one and the Redis one behave the same."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from botify.history import KEY_PREFIX, History, MemoryHistory, RedisHistory, Step


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


def test_redis_holds_plain_strings_with_an_expiry(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    RedisHistory(redis_url, ttl=60).update([step(9, 10, 0.25, session=3)])

    key = f"{KEY_PREFIX}9:3"
    assert client.lrange(key, 0, -1) == [b"10:0.25"]
    assert 0 < client.ttl(key) <= 60
    client.close()
