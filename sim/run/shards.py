"""Running a simulation as shards: one process per shard, Ray tasks, or any other executor.

A shard takes every n-th arrival of each day (session ids are planned from the seed), so
the union of the shards is exactly the single-process run's sessions. The executor is an
interface: it only has to map `run_shard` over the jobs and return the results in order. The
process pool runs them on this machine, `RayExecutor` as Ray tasks on a local or remote cluster,
or on the warm workers of `sim.run.ray_pool` that a running cluster keeps between runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sim.config import EnvConfig
from sim.run.clients import Client, DummyClient, LocalClient, remote_client
from sim.run.timeline import SessionRecord, Timeline
from sim.world import World

if TYPE_CHECKING:
    from sim.run.replay import ExperimentSpec

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ClientSpec:
    """How to build a client inside a shard: 'remote', 'dummy', 'local' (with a registry name, its
    parameters, artifact and fallback, its latency budget in seconds, and the event log its service
    writes to, if any) or 'experiment' (botify's service in process serving an experiments file;
    see `sim.run.replay.ExperimentSpec`)."""

    kind: str
    name: str = ""
    artifact: str | None = None
    params: dict[str, object] = field(default_factory=dict)
    log: Path | None = None
    experiment: ExperimentSpec | None = None
    fallback: str | None = None
    latency_budget: float | None = None

    def build(self, config: EnvConfig, seed: int, world: World) -> Client:
        """The client, given the shard's already loaded `world` (local recommenders read its catalog)."""
        if self.kind == "remote":
            return remote_client(config.service)
        if self.kind == "dummy":
            return DummyClient(world.n_tracks, seed)
        if self.kind == "local":
            return LocalClient(
                self.name, world.catalog, params=self.params, artifact=self.artifact, log=self.log,
                day_zero=config.time.start - dt.timedelta(days=1),  # simulated day 1 begins at `start`
                fallback=self.fallback, latency_budget=self.latency_budget,
            )
        if self.kind == "experiment" and self.experiment is not None:
            from sim.run.replay import experiment_client

            return experiment_client(self.experiment, config, world, self.log)
        raise ValueError(f"client kind == {self.kind!r}, must be 'remote', 'dummy', 'local' or 'experiment' (with its spec)")


@dataclass(frozen=True)
class ShardJob:
    """One shard's work: which days, how many arrivals per day (all shards together), which client.

    `days` is any iterable of day numbers: a tuple or range for shards (they are pickled), an
    endless `itertools.count` for an interactive run that stops when the person says so.
    """

    config: EnvConfig
    seed: int
    days: Iterable[int]
    episodes: int
    client: ClientSpec
    shard: int = 0
    n_shards: int = 1


@dataclass
class ShardResult:
    """What a shard returns: its sessions, and how many items it sent in how many batches."""

    records: list[SessionRecord]
    served: int
    batches: int


def run_shard(
    job: ShardJob,
    *,
    world: World | None = None,
    on_session: Callable[[SessionRecord], None] | None = None,
    before_day: Callable[[int], bool] | None = None,
) -> ShardResult:
    """Simulate `job` in this process.

    `world` is the job's world already loaded (a warm worker keeps it; the world is only read);
    by default it is loaded here. `on_session` sees every finished session (a progress bar);
    `before_day(day)` runs before each day and returning False ends the run there (an interactive
    pause between days).
    """
    world = World(job.config.world) if world is None else world
    client = job.client.build(job.config, job.seed + job.shard, world)
    try:
        timeline = Timeline(
            world, job.config, client, job.seed, shard=job.shard, n_shards=job.n_shards, on_session=on_session
        )
        for day in job.days:
            if before_day is not None and not before_day(day):
                break
            timeline.run_day(day, job.episodes)
        return ShardResult(timeline.records, timeline.served, timeline.batches)
    finally:
        client.close()


class ShardExecutor(Protocol):
    """Maps a function over shard jobs, returning results in job order."""

    def map(self, fn: Callable[[T], R], jobs: Sequence[T]) -> list[R]: ...


class InlineExecutor:
    """Runs the shards one after another in this process."""

    def map(self, fn: Callable[[T], R], jobs: Sequence[T]) -> list[R]:
        return [fn(job) for job in jobs]


class ProcessExecutor:
    """Runs the shards in a pool of local processes."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"processes == {processes}, must be >= 1")
        self.processes = processes

    def map(self, fn: Callable[[T], R], jobs: Sequence[T]) -> list[R]:
        with ProcessPoolExecutor(max_workers=self.processes) as pool:
            return list(pool.map(fn, jobs))


class ClusterUnavailable(RuntimeError):
    """No Ray cluster answers at the given address; the message says where and what to do."""


class RayExecutor:
    """Runs the shards as Ray tasks or on a warm pool, one CPU each.

    Without `address`, a local Ray cluster of `num_cpus` CPUs is started for the run and shut
    down after it (one already started in this process, by `ray.init`, is used as it is), and the
    shards run as tasks. With `address` ("host:port" of a cluster's head, "ray://host:port" for
    Ray Client, or "auto"), they run on that cluster, whose nodes need this project installed and
    the world at the same path: with `pool` (the default) on this checkout's warm workers
    (`sim.run.ray_pool`), created by the first run and kept for later ones, otherwise as fresh
    tasks. A shard's result does not depend on where it runs, so the sessions are those of the
    process executor. After a pooled run, `created` says how many workers it had to start.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, pool: bool = True) -> None:
        if num_cpus is not None and num_cpus < 1:
            raise ValueError(f"num_cpus == {num_cpus}, must be >= 1")
        self.address, self.num_cpus, self.pool = address, num_cpus, pool
        self.created: int | None = None

    def map(self, fn: Callable[[T], R], jobs: Sequence[T]) -> list[R]:
        with ray_session(self.address, self.num_cpus) as ray:
            if self.address is not None and self.pool:
                from sim.run.ray_pool import ShardPool

                results, self.created = ShardPool().map(fn, jobs)  # type: ignore[arg-type]
                return results  # type: ignore[return-value]
            task = ray.remote(num_cpus=1, max_retries=0)(fn)
            return list(ray.get([task.remote(job) for job in jobs]))


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[Any]:
    """The `ray` module, joined to the cluster at `address` or to a local cluster of `num_cpus` CPUs
    started here (one this process already joined is used as it is, and left joined).

    A cluster on this machine stays on loopback: Ray otherwise swaps 127.0.0.1 for the machine's
    network address and listens on every interface. Ray reads that setting when it is imported.
    """
    if address is not None:
        check_reachable(address)
    if address is None or _is_loopback(address):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Ray runs its workers at niceness 15 by default: on a busy machine the shards, the run's whole
    # work, would then yield to everything else (the process pool's do not).
    os.environ.setdefault("RAY_worker_niceness", "0")
    if address is not None and "RAY_AUTH_MODE" not in os.environ and _ray_token_available():
        os.environ["RAY_AUTH_MODE"] = "token"  # `ray start` clusters ask for the token; a driver sends it only in this mode
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        else:
            try:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            except (ConnectionError, ray.exceptions.AuthenticationError) as error:
                raise ClusterUnavailable(f"could not join the Ray cluster at {address}: {str(error).splitlines()[0]}") from None
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def _is_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _ray_token_available() -> bool:
    """Whether Ray would find an authentication token (its environment variables, or its default file)."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Raise `ClusterUnavailable` unless something accepts connections at `address` ("host:port",
    "ray://host:port"); "auto" and other forms are left to Ray. Ray itself retries for a minute."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        if address != "auto":
            raise ClusterUnavailable(f"--address {address!r} is not host:port, ray://host:port or auto")
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ClusterUnavailable(
            f"no Ray cluster answers at {address} ({error.strerror or error}); start one with `ray start --head` "
            f"or leave out --address to run on a local cluster"
        ) from None
