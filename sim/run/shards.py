"""Running a simulation as shards: one process per shard, or any other executor.

A shard takes every n-th arrival of each day (session ids are planned from the seed), so
the union of the shards is exactly the single-process run's sessions. The executor is an
interface: the process pool is one implementation; a cluster executor (Ray, say) only has to
map `run_shard` over the jobs and return the results in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from sim.config import EnvConfig
from sim.run.clients import Client, DummyClient, LocalClient, RemoteClient
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
            return RemoteClient(config.service)
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
    on_session: Callable[[SessionRecord], None] | None = None,
    before_day: Callable[[int], bool] | None = None,
) -> ShardResult:
    """Simulate `job` in this process.

    `on_session` sees every finished session (a progress bar); `before_day(day)` runs before each
    day and returning False ends the run there (an interactive pause between days).
    """
    world = World(job.config.world)
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
