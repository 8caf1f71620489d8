"""Warm shard workers on a running Ray cluster: named, detached actors that outlive a run.

A fresh Ray worker pays for importing the project and loading the world before it simulates
anything (seconds: more than a small day's whole simulation). A pool worker pays once and then
serves every later `multi --executor ray --address ADDR` run, keeping the worlds it has loaded
(keyed by the world's fingerprint, the `WORLDS_KEPT` most recently used). The shard's work is
still `sim.run.shards.run_shard`; a worker only hands it the loaded world.

Workers live in the namespace `NAMESPACE` under the name `shard-<code>-<i>`, where `<code>`
fingerprints the project's source files: a run of other code never reaches them. It finds
them stale and says so, and `ray-pool start` replaces them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.run.shards import ShardJob, ShardResult
    from sim.world import World

NAMESPACE = "botify-lab"  # the project's Ray namespace: its pool, whoever started it
PREFIX = "shard"
PACKAGES = ("contracts", "recommenders", "botify", "sim")  # what a shard imports of this project
SOURCE_SUFFIXES = (".py", ".sql", ".yml", ".yaml")
WORLDS_KEPT = 2  # worlds a worker keeps loaded
READY_TIMEOUT_S = 120.0  # seconds for new workers to start (imports on a busy node); longer means no free CPU
STOP_TIMEOUT_S = 30.0  # seconds for killed workers to release their names


class PoolError(RuntimeError):
    """The pool cannot serve this run (stale code, no free CPU); the message says what to do."""


def code_fingerprint(packages: Iterable[str] = PACKAGES) -> str:
    """12 hex digits of a hash of the packages' source files as this interpreter finds them
    (path and content, in order): two checkouts or versions that differ in any file differ here."""
    digest = hashlib.sha256()
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise PoolError(f"package {package!r} is not importable here")
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*")):
            if path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts and path.is_file():
                digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def worker_name(code: str, index: int) -> str:
    return f"{PREFIX}-{code}-{index}"


class ShardWorker:
    """One pool worker (a Ray actor, one CPU): runs shard jobs with the project imported and
    their worlds kept loaded. Its life: created by the first run or by `ray-pool start`, serves
    runs one job at a time, ends when `ray-pool stop` kills it or its cluster stops."""

    def __init__(self) -> None:
        self.code = code_fingerprint()
        self.worlds: OrderedDict[str, World] = OrderedDict()
        self.loads = 0
        self.runs = 0

    def world(self, world_dir: Path) -> World:
        """The world at `world_dir`, loaded once per fingerprint (the least recently used dropped)."""
        from contracts.catalog import world_fingerprint
        from sim.world import World

        key = world_fingerprint(world_dir)
        if key in self.worlds:
            self.worlds.move_to_end(key)
        else:
            self.worlds[key] = World(world_dir)
            self.loads += 1
            while len(self.worlds) > WORLDS_KEPT:
                self.worlds.popitem(last=False)
        return self.worlds[key]

    def run(self, fn: Callable[..., ShardResult], job: ShardJob) -> ShardResult:
        """`fn(job, world=...)`: `run_shard` with the job's world already loaded."""
        self.runs += 1
        return fn(job, world=self.world(job.config.world))

    def load(self, world_dir: Path) -> None:
        """Load a world ahead of the first run that needs it."""
        self.world(world_dir)

    def describe(self) -> dict[str, Any]:
        """What this worker holds: its code, its worlds (fingerprint -> path), its counts, its process."""
        return {"code": self.code, "worlds": {key: str(world.path) for key, world in self.worlds.items()},
                "loads": self.loads, "runs": self.runs, "pid": os.getpid()}


def _named_workers() -> list[str]:
    """The names of every pool worker in the namespace, of any code."""
    import ray

    return sorted(
        entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == NAMESPACE and entry["name"].startswith(f"{PREFIX}-")
    )


class ShardPool:
    """This checkout's workers on the cluster that this process has joined (`ray.init`)."""

    def __init__(self, code: str | None = None) -> None:
        self.code = code or code_fingerprint()

    def stale(self) -> list[str]:
        """Workers of other code (another checkout or version) in the namespace."""
        return [name for name in _named_workers() if not name.startswith(f"{PREFIX}-{self.code}-")]

    def names(self) -> list[str]:
        """This code's workers, in index order."""
        ours = [name for name in _named_workers() if name.startswith(f"{PREFIX}-{self.code}-")]
        return sorted(ours, key=lambda name: int(name.rpartition("-")[2]))

    def workers(self, n: int) -> tuple[list[Any], int]:
        """Handles of workers 0..n-1, created where missing (detached: they outlive this run), and
        how many were created. Refuses while workers of other code hold the namespace."""
        import ray

        stale = self.stale()
        if stale:
            code = stale[0].split("-")[1]
            raise PoolError(
                f"the cluster's shard pool runs other code ({len(stale)} worker(s) of code {code}; this checkout is {self.code}): "
                f"replace it with `python -m sim.run ray-pool start --address ADDR`, or stop it with `... ray-pool stop`"
            )
        existing = set(self.names())
        actor: Any = ray.remote(ShardWorker)
        handles: list[Any] = [
            actor.options(name=worker_name(self.code, i), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                          num_cpus=1, max_restarts=0).remote()
            for i in range(n)
        ]
        created = [h for i, h in enumerate(handles) if worker_name(self.code, i) not in existing]
        try:
            described = ray.get([h.describe.remote() for h in created], timeout=READY_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            for handle in created:
                ray.kill(handle)
            raise PoolError(
                f"{len(created)} new shard worker(s) did not start within {READY_TIMEOUT_S:.0f} s: the cluster has "
                f"{ray.available_resources().get('CPU', 0):.0f} free CPU(s); use fewer --processes or free the cluster's CPUs"
            ) from None
        for handle, description in zip(created, described, strict=True):
            if description["code"] != self.code:  # the cluster's nodes import another checkout than this one
                ray.kill(handle)
                raise PoolError(
                    f"the cluster's workers import code {description['code']}, this checkout is {self.code}: "
                    f"start the cluster from this checkout (scripts/ray.sh start) or install this version on its nodes"
                )
        return handles, len(created)

    def map(self, fn: Callable[..., ShardResult], jobs: Sequence[ShardJob]) -> tuple[list[ShardResult], int]:
        """`fn(job, world=...)` for every job on the pool's workers, in job order; and how many
        workers this run had to create (0: every worker was warm)."""
        import ray

        # More shards than the cluster has CPUs: workers take several in turn, as processes would share cores.
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        handles, created = self.workers(min(len(jobs), cpus))
        return list(ray.get([handles[i % len(handles)].run.remote(fn, job) for i, job in enumerate(jobs)])), created

    def load(self, n: int, world_dir: Path | None) -> tuple[list[dict[str, Any]], int]:
        """Start workers 0..n-1 (replacing stale ones first) with `world_dir` loaded; their descriptions."""
        import ray

        self.stop(stale_only=True)
        handles, created = self.workers(n)
        if world_dir is not None:
            ray.get([h.load.remote(world_dir) for h in handles])
        return ray.get([h.describe.remote() for h in handles]), created

    def status(self) -> list[tuple[str, dict[str, Any]]]:
        """Every worker of the namespace (this code's and stale ones) with its description."""
        import ray

        out: list[tuple[str, dict[str, Any]]] = []
        for name in _named_workers():
            try:
                handle: Any = ray.get_actor(name, namespace=NAMESPACE)
                out.append((name, ray.get(handle.describe.remote(), timeout=30)))
            except (ValueError, ray.exceptions.RayError) as error:
                out.append((name, {"error": str(error).splitlines()[0]}))
        return out

    def stop(self, stale_only: bool = False) -> list[str]:
        """Kill the namespace's workers (only those of other code with `stale_only`); their names."""
        import ray

        names = self.stale() if stale_only else _named_workers()
        for name in names:
            try:
                ray.kill(ray.get_actor(name, namespace=NAMESPACE))
            except ValueError:  # gone meanwhile
                pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while names and set(names) & set(_named_workers()):  # a killed actor's name is freed shortly after
            if time.monotonic() > deadline:
                raise PoolError(f"shard workers {sorted(set(names) & set(_named_workers()))} were killed but still hold their names")
            time.sleep(0.1)
        return names
