"""Who answers the simulated listeners: botify over HTTP, botify's `Service` in process, or a dummy.

Every client takes a list of `Item`s (botify's request items: one 'next' or 'last' message each,
as the HTTP API defines them) and returns, per item, the recommended track for 'next' and None
for 'last'.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import orjson
import urllib3
from urllib3.exceptions import HTTPError

from botify.validation import Item
from contracts.columns import MESSAGE_LAST as LAST
from contracts.columns import MESSAGE_NEXT as NEXT
from sim import streams
from sim.config import ServiceOptions

if TYPE_CHECKING:
    from botify.batch import ItemBatch
    from botify.experiments import Experiments
    from botify.service import Service
    from contracts.catalog import Catalog
    from contracts.eventlog import EventWriter

log = logging.getLogger(__name__)

__all__ = [
    "LAST", "NEXT", "Client", "ColumnarClient", "DummyClient", "Item", "LocalClient", "RemoteClient", "ReplicaClient", "ServiceError", "ServiceUnavailable",
    "SwitchClient", "remote_client",
]

LOCAL_EXPERIMENT = "local"  # the one experiment of an in-process run's log


class ServiceError(RuntimeError):
    """The service failed a request for good; the message names the user, session and status."""


class ServiceUnavailable(ServiceError):
    """Nothing answers at the configured address."""


class Client(Protocol):
    """Answers items; `describe()` returns the service's self-description (GET /) or None."""

    def serve(self, items: Sequence[Item]) -> list[int | None]: ...

    def describe(self) -> dict[str, object] | None: ...

    def close(self) -> None: ...


@runtime_checkable
class ColumnarClient(Protocol):
    """A client that also answers a batch given as columns, without an `Item` per request."""

    def serve_batch(self, batch: ItemBatch) -> np.ndarray:
        """The answer of each item of `batch`: the track for a 'next', -1 for a 'last' (int64)."""
        ...


class RemoteClient:
    """botify over HTTP: one pooled keep-alive connection (urllib3), POST /batch when available.

    A failed call (connection error, timeout, 5xx, 429) is retried `retries` times with
    exponential backoff, then reported as `ServiceError` naming the users and sessions; a 4xx
    answer is the client's fault and is reported at once, never swallowed. urllib3 rather than
    requests: the client's CPU per call is what `multi` runs on few cores are short of, and
    urllib3 spends far less of it (figures in README.md, "Measured").
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
        payload = {"requests": [{"message": i.message, "user": i.user, **_body(i)} for i in items]}
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
        answer = self._post(f"/{item.message}/{item.user}", _body(item), [item])
        assert answer is not None  # single endpoints always exist
        return int(orjson.loads(answer)["track"]) if item.message == NEXT else None

    def _post(self, path: str, payload: Mapping[str, object], items: Sequence[Item]) -> bytes | None:
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


class ReplicaClient:
    """Several botify replicas as one client: each listener's requests go to one replica.

    The replica of a user is a hash of the user id, so a session (and every later session of
    the listener) stays on one replica, whose history and any per-process state it then finds.
    A batch is split by replica, order kept within each part, and the parts are sent at once
    (one thread per replica), so replicas on several cores or hosts serve in parallel. The
    answers are those of one service when the replicas share the service's configuration
    (experiments, seed, world): a request's answer depends only on its session and user.
    """

    def __init__(self, replicas: Sequence[Client]) -> None:
        if not replicas:
            raise ValueError("ReplicaClient needs at least one replica")
        self.replicas = list(replicas)
        self._pool: ThreadPoolExecutor | None = None

    def replica_of(self, user: int) -> int:
        """The index of the replica that serves `user`."""
        return int(streams.uniform_scalar(REPLICA_KEY, user) * len(self.replicas))

    def describe(self) -> dict[str, object] | None:
        return self.replicas[0].describe()

    def serve(self, items: Sequence[Item]) -> list[int | None]:
        parts: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            parts.setdefault(self.replica_of(item.user), []).append(i)
        if len(parts) == 1:
            (replica,) = parts
            return self.replicas[replica].serve(items)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self.replicas), thread_name_prefix="replica")
        futures = {replica: self._pool.submit(self.replicas[replica].serve, [items[i] for i in indices]) for replica, indices in parts.items()}
        answers: list[int | None] = [None] * len(items)
        for replica, indices in parts.items():
            for i, answer in zip(indices, futures[replica].result(), strict=True):
                answers[i] = answer
        return answers

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for replica in self.replicas:
            replica.close()


REPLICA_KEY = 0x5EED_0F_4E9  # keys the user -> replica hash (any fixed value; changing it moves listeners)


def remote_client(options: ServiceOptions) -> Client:
    """botify over HTTP: one service, or a `ReplicaClient` over `options.replicas`."""
    if not options.replicas:
        return RemoteClient(options)
    return ReplicaClient([RemoteClient(options.model_copy(update={"host": host, "port": port, "replicas": []})) for host, port in options.addresses()])


def _body(item: Item) -> dict[str, object]:
    """The JSON body of `item` as the single endpoints take it."""
    return {"track": item.track, "time": item.time, "session": item.session, "ts": item.ts}


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
    """botify's own `Service` in process: the serving path of `botify serve`, without HTTP.

    The service is built as `create_app` builds it (the registry's recommender, an in-memory
    history, the service's request seeds and day), with one experiment, "local", of one
    treatment. So `local:<name>` and a service serving `<name>` give the same sessions for the
    same seed. With `log`, every event is written to that event log by the service's own writer.
    With `experiments` (built by `botify.experiments.build_experiments` from an experiments
    file), it serves those experiments as `botify serve` would, instead of `name` alone.
    `params` are the recommender's construction parameters, `fallback` a registry name that
    answers where it breaks a rule, `latency_budget` the seconds an answer may take (as an
    experiments file's treatment has them).
    """

    def __init__(
        self,
        name: str,
        catalog: Catalog,
        *,
        params: dict[str, object] | None = None,
        artifact: str | None = None,
        log: Path | None = None,
        day_zero: dt.date,
        service_seed: int = 0,
        experiments: Experiments | None = None,
        fallback: str | None = None,
        latency_budget: float | None = None,
    ) -> None:
        from botify.experiments import single_treatment
        from botify.history import MemoryHistory
        from botify.service import Service
        from recommenders.registry import make

        self.name = name
        if experiments is None:
            rescue = None if fallback is None else (fallback, make(fallback, catalog))
            experiments = single_treatment(
                LOCAL_EXPERIMENT, name, make(name, catalog, params, artifact), fallback=rescue, latency_budget=latency_budget
            )
        self._writer: EventWriter | None = None
        if log is not None:
            from contracts.eventlog import EventWriter, LogLayout  # imported here: DuckDB only for a run with a log

            self._writer = EventWriter(LogLayout.of(log), experiments.names, flush_window=3600.0)
        self.service: Service = Service(catalog, experiments, MemoryHistory(), self._writer, seed=service_seed, day_zero=day_zero)

    def describe(self) -> dict[str, object]:
        return {"status": "local", "recommender": self.name}

    def serve(self, items: Sequence[Item]) -> list[int | None]:
        from botify.service import ServeError

        answers = self.service.serve(items)
        for item, answer in zip(items, answers, strict=True):
            if isinstance(answer, ServeError):
                raise ServiceError(f"user {item.user}, session {item.session}: {answer}")
        return answers  # type: ignore[return-value]

    def serve_batch(self, batch: ItemBatch) -> np.ndarray:
        """`serve` of a batch given as columns, through the service's `serve_batch` (the same serving path)."""
        served = self.service.serve_batch(batch)
        if served.failures:
            i = min(served.failures)
            raise ServiceError(f"user {batch.users[i]}, session {batch.sessions[i]}: {served.failures[i]}")
        return served.tracks

    def close(self) -> None:
        """Seal the events written so far; unlike at interpreter exit, a failure to seal raises."""
        if self._writer is not None:
            try:
                self._writer.flush()
            finally:
                self._writer.close()


class SwitchClient:
    """`before` answers the sessions that start before `switch_ms` (epoch ms), `after` the others.

    How an experiment starts on a given day of an in-process run: the pre-period's service
    answers until then, the experiment's from then on. A session belongs to the service it
    started with, so no session's history is split between two services.
    """

    def __init__(self, before: Client, after: Client, switch_ms: int) -> None:
        self.before, self.after, self.switch_ms = before, after, switch_ms
        self._open_before: set[tuple[int, int | None]] = set()

    def describe(self) -> dict[str, object] | None:
        return self.after.describe()

    def serve(self, items: Sequence[Item]) -> list[int | None]:
        early: list[int] = []
        for i, item in enumerate(items):
            key = (item.user, item.session)
            if key in self._open_before or (item.ts is not None and item.ts < self.switch_ms):
                early.append(i)
                if item.message == LAST:
                    self._open_before.discard(key)
                else:
                    self._open_before.add(key)
        if not early:
            return self.after.serve(items)
        chosen = set(early)
        late = [i for i in range(len(items)) if i not in chosen]
        answers: list[int | None] = [None] * len(items)
        for indices, client in ((early, self.before), (late, self.after)):
            if indices:
                for i, answer in zip(indices, client.serve([items[i] for i in indices]), strict=True):
                    answers[i] = answer
        return answers

    def close(self) -> None:
        try:
            self.before.close()
        finally:
            self.after.close()
