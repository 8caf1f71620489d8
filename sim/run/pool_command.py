"""`python -m sim.run ray-pool start|status|stop`: the warm shard workers on a running Ray cluster.

    python -m sim.run --world data/world ray-pool start --address 127.0.0.1:6380   # one worker per CPU, the world loaded
    python -m sim.run ray-pool status --address 127.0.0.1:6380
    python -m sim.run ray-pool stop --address 127.0.0.1:6380
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from contracts.config import ConfigError
from sim.config import env_config_or_defaults
from sim.run.ray_pool import NAMESPACE, PoolError, ShardPool
from sim.run.shards import ClusterUnavailable, ray_session

address_option = click.option(
    "--address", required=True, envvar="RAY_ADDRESS", metavar="HOST:PORT",
    help="The Ray cluster (its head's address, ray://host:port or auto; default $RAY_ADDRESS).",
)


@click.group("ray-pool")
def ray_pool() -> None:
    """Warm shard workers on a running Ray cluster, reused by `multi --executor ray --address`.

    Each worker (one CPU) keeps the project imported and the worlds it served loaded, so a run
    skips both. Workers are named by the fingerprint of the code they run: after a change of
    code, runs refuse the old ones until `start` replaces them.
    """


@ray_pool.command()
@address_option
@click.option("--workers", type=click.IntRange(min=1, max=256), default=None, help="How many (default: one per CPU of the cluster).")
@click.pass_obj
def start(options: Any, address: str, workers: int | None) -> None:
    """Start this code's workers (replacing those of other code) with the run's world loaded."""
    world = _world(options)
    with _session(address) as ray:
        n = workers or int(ray.cluster_resources().get("CPU", 1))
        pool = ShardPool()
        stale = pool.stale()
        described, created = pool.load(n, world)
        if stale:
            click.echo(f"stopped {len(stale)} worker(s) of other code")
        loaded = f", world {world} loaded" if world is not None else ""
        click.echo(f"shard pool on {address}: {len(described)} worker(s) of code {pool.code} ({created} started now{loaded})")


@ray_pool.command()
@address_option
def status(address: str) -> None:
    """One line per worker: its code (this checkout's or stale), worlds, runs and process."""
    with _session(address):
        pool = ShardPool()
        workers = pool.status()
        if not workers:
            click.echo(f"no shard workers on {address} (namespace {NAMESPACE})")
        for name, info in workers:
            if "error" in info:
                click.echo(f"{name}: {info['error']}")
                continue
            state = "current" if info["code"] == pool.code else "stale (other code)"
            worlds = ", ".join(info["worlds"].values()) or "none"
            click.echo(f"{name}: {state}, pid {info['pid']}, {info['runs']} shard run(s), worlds loaded: {worlds}")


@ray_pool.command()
@address_option
def stop(address: str) -> None:
    """Stop every shard worker of the project's namespace (any code)."""
    with _session(address):
        click.echo(f"stopped {len(ShardPool().stop())} shard worker(s) on {address}")


def _world(options: Any) -> Path | None:
    """The world to load: --world, else the config's world if it exists (none: load on first run)."""
    if options.world is not None:
        if not (options.world / "public").is_dir():
            raise click.ClickException(f"--world {options.world} is not a world directory; generate one with `python -m sim.world --out {options.world}`")
        return Path(options.world).resolve()
    try:
        world = Path(env_config_or_defaults(options.config_path).world)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    return world.resolve() if (world / "public").is_dir() else None


@contextmanager
def _session(address: str) -> Iterator[Any]:
    """`ray_session(address)`, its failures (no cluster, a stale or full pool) each one line."""
    try:
        with ray_session(address) as ray:
            yield ray
    except (ClusterUnavailable, PoolError) as error:
        raise click.ClickException(str(error)) from None
