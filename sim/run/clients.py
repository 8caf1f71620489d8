"""Who answers the simulated listeners: botify over HTTP, a recommender in-process, or a dummy.

Every client takes a list of `Item`s (one 'next' or 'last' message each, as the HTTP API
defines them) and returns, per item, the recommended track for 'next' and None for 'last'.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import orjson
import urllib3
from urllib3.exceptions import HTTPError


from sim.config import ServiceOptions

if TYPE_CHECKING:
    from contracts.catalog import Catalog

log = logging.getLogger(__name__)

NEXT, LAST = "next", "last"


class ServiceError(RuntimeError):
    """The service failed a request for good; the message names the user, session and status."""


class ServiceUnavailable(ServiceError):
    """Nothing answers at the configured address."""


@dataclass(frozen=True, slots=True)
class Item:
    """One message of a listener: 'next' (what now?) or 'last' (the session ended)."""

    message: str
    user: int
    track: int
    time: float
    session: int
    ts: int  # simulated epoch milliseconds

    def body(self) -> dict[str, object]:
        return {"track": self.track, "time": self.time, "session": self.session, "ts": self.ts}


class Client(Protocol):
    """Answers items; `describe()` returns the service's self-description (GET /) or None."""

    def serve(self, items: Sequence[Item]) -> list[int | None]: ...

    def describe(self) -> dict[str, object] | None: ...

    def close(self) -> None: ...


class RemoteClient:
    """botify over HTTP: one pooled keep-alive connection (urllib3), POST /batch when available.

    A failed call (connection error, timeout, 5xx, 429) is retried `retries` times with
    exponential backoff, then reported as `ServiceError` naming the users and sessions; a 4xx
    answer is the client's fault and is reported at once, never swallowed. urllib3 rather than
    requests: a third of the client's CPU per batch (300 us against 700 us per call, measured),
    which is what `multi` runs on 2 cores are short of.
    """

    _HEADERS = {"Content-Type": "application/json"}

    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self.base = f"http://{options.host}:{options.port}"
        # A dropped keep-alive connection is reopened by the pool itself when it is next checked out.
        self._http = urllib3.HTTPConnectionPool(
            options.host, options.port, maxsize=1, block=True, retries=False, timeout=options.timeout_s
        )
        self._batch = options.batch
        self.calls = 0

    def describe(self) -> dict[str, object]:
        """GET / — also the check that a service answers at all."""
        timeout = min(self.options.timeout_s, 5.0)
        try:
            answer = self._http.request("GET", "/", timeout=timeout)
        except HTTPError:
            raise ServiceUnavailable(
                f"no botify service answers at {self.base}. Start one with `botify serve` "
                f"(or pass --host/--port), or simulate in-process with --recommender local:<name>."
            ) from None
        if answer.status != 200:
            raise ServiceUnavailable(f"{self.base}/ answered {answer.status}: is this a botify service?")
        description = orjson.loads(answer.data)
        experiments = self._http.request("GET", "/experiments", timeout=timeout)
        if experiments.status == 200:  # botify's; the course's service has no such page
            description.update(orjson.loads(experiments.data))
        return description

    def serve(self, items: Sequence[Item]) -> list[int | None]:
        if self._batch:
            answers: list[int | None] = []
            for start in range(0, len(items), self.options.max_batch):
                chunk = items[start : start + self.options.max_batch]
                result = self._serve_batch(chunk)
                if result is None:  # the service has no batch endpoint: one call per item from now on
                    self._batch = False
                    return answers + [self._serve_one(item) for item in items[start:]]
                answers.extend(result)
            return answers
        return [self._serve_one(item) for item in items]

    def _serve_batch(self, items: Sequence[Item]) -> list[int | None] | None:
        payload = {"requests": [{"message": i.message, "user": i.user, **i.body()} for i in items]}
        answer = self._post("/batch", payload, items)
        if answer is None:
            return None
        responses = orjson.loads(answer)["responses"]
        out: list[int | None] = []
        for item, response in zip(items, responses, strict=True):
            if "error" in response:
                raise ServiceError(
                    f"botify rejected {item.message} for user {item.user}, session {item.session}: "
                    f"{response.get('status', 400)} {response['error']}"
                )
            out.append(int(response["track"]) if item.message == NEXT else None)
        return out

    def _serve_one(self, item: Item) -> int | None:
        answer = self._post(f"/{item.message}/{item.user}", item.body(), [item])
        assert answer is not None  # single endpoints always exist
        return int(orjson.loads(answer)["track"]) if item.message == NEXT else None

    def _post(self, path: str, payload: dict[str, object], items: Sequence[Item]) -> bytes | None:
        """The answer's body, None when POST /batch does not exist; raises ServiceError on failure."""
        data = orjson.dumps(payload)
        delay, failure = self.options.backoff_s, ""
        for attempt in range(self.options.retries + 1):
            if attempt:
                time.sleep(delay)
                delay *= 2
            try:
                answer = self._http.urlopen("POST", path, body=data, headers=self._HEADERS)
            except HTTPError as error:
                failure = f"{type(error).__name__}: {error}"
                continue
            self.calls += 1
            if answer.status == 200:
                return answer.data
            if path == "/batch" and answer.status in (404, 405):
                log.info("the service has no POST /batch; falling back to one request per item")
                return None
            failure = f"status {answer.status}: {answer.data[:300].decode(errors='replace')}"
            if answer.status < 500 and answer.status != 429:
                break  # a client error does not get better by retrying
        who = ", ".join(f"user {i.user} session {i.session}" for i in items[:3])
        more = f" and {len(items) - 3} more" if len(items) > 3 else ""
        raise ServiceError(f"POST {path} failed after {attempt + 1} tries ({who}{more}): {failure}")

    def close(self) -> None:
        self._http.close()


class DummyClient:
    """No service at all: a uniformly random track, as the course's dummy recommender."""

    def __init__(self, n_tracks: int, seed: int) -> None:
        self._n = n_tracks
        self._rng = np.random.default_rng(seed)

    def describe(self) -> None:
        return None

    def serve(self, items: Sequence[Item]) -> list[int | None]:
        tracks = self._rng.integers(self._n, size=len(items))
        return [int(t) if item.message == NEXT else None for item, t in zip(items, tracks)]

    def close(self) -> None:
        pass


class LocalClient:
    """A recommender called in-process through the plugin API, without HTTP.

    Answers as a botify service with the default seed would: the same session history store
    (`botify.history.MemoryHistory`), the same request seeds (`contracts.seeds`), the same day. So
    `local:<name>` and a service serving `<name>` give the same sessions for the same seed.
    When asked, it records every event with the event log's columns (see `events()`), so a
    local run can feed training.
    """

    def __init__(
        self,
        name: str,
        catalog: Catalog,
        *,
        params: dict[str, object] | None = None,
        artifact: str | None = None,
        record: bool = False,
        day_one_ms: int = 0,
        service_seed: int = 0,
    ) -> None:
        from botify.history import MemoryHistory
        from recommenders.registry import make

        self.name = name
        self.recommender = make(name, catalog, params, artifact)
        self._history = MemoryHistory()
        self._record = record
        self._rows: list[tuple] = []
        self._day_one_ms = day_one_ms  # epoch ms at which simulated day 1 begins
        self._service_seed = service_seed

    def describe(self) -> dict[str, object]:
        return {"status": "local", "recommender": self.name}

    def serve(self, items: Sequence[Item]) -> list[int | None]:
        from botify.history import Step
        from contracts.seeds import request_seed
        from recommenders.base import Request

        histories = self._history.update([Step(i.user, i.session, i.track, i.time, i.message == LAST) for i in items])
        requests_, positions = [], []
        for position, (item, history) in enumerate(zip(items, histories, strict=True)):
            if history is None:  # 'last': the session is over
                continue
            seed = request_seed(self._service_seed, item.session, item.ts)
            day = (item.ts - self._day_one_ms) // 86_400_000 + 1
            requests_.append(Request(item.user, item.track, item.time, history.tracks, history.times, seed, day))
            positions.append(position)
        started = time.perf_counter()
        answers = self.recommender.recommend_batch(requests_) if requests_ else []
        latency = (time.perf_counter() - started) / max(len(requests_), 1)
        out: list[int | None] = [None] * len(items)
        for position, answer in zip(positions, answers):
            out[position] = int(answer.track)
        if self._record:
            propensity = {p: a.propensity for p, a in zip(positions, answers)}
            for position, item in enumerate(items):
                self._rows.append(
                    (item.ts, item.user, item.session, item.message, item.track, item.time, out[position], self.name, latency, propensity.get(position))
                )
        return out

    def events(self) -> list[tuple]:
        """Recorded events: (ts ms, user, session, message, track, time, recommendation, recommender, latency, propensity)."""
        return self._rows

    def close(self) -> None:
        pass
