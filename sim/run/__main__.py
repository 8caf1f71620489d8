"""`python -m sim.run`: simulated days of listeners against botify (or a recommender in-process).

    python -m sim.run --episodes 2000                                   # one day, one process
    python -m sim.run --episodes 2000 --config config/env.yml multi --processes 4
    python -m sim.run --episodes 500 --recommender local:sticky_artist --log data/local.duckdb
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from sim.config import EnvConfig, ServiceOptions, load_env_config
from sim.run.clients import RemoteClient, ServiceError, ServiceUnavailable
from sim.run.shards import ClientSpec, ProcessExecutor, ShardJob, ShardResult, run_shard
from sim.run.summary import render, summarize, treatment_labels
from sim.world import ConfigError, load_world_config

DEFAULT_CONFIG = Path("config/env.yml")


def _load_config(path: Path, host: str | None, port: int | None) -> EnvConfig:
    if path.exists():
        config = load_env_config(path)
    elif path == DEFAULT_CONFIG:
        config = EnvConfig()
    else:
        raise ConfigError(f"env config {path} does not exist")
    service: dict[str, object] = config.service.model_dump()
    service.update({k: v for k, v in (("host", host), ("port", port)) if v is not None})
    return config.model_copy(update={"service": ServiceOptions.model_validate(service)})


def _ensure_world(config: EnvConfig) -> None:
    """Generate the configured world on first use, as the course's simulator fetched its data."""
    if (config.world / "public").is_dir():
        return
    world_config = load_world_config(config.world_config) if config.world_config.exists() else None
    if world_config is None:
        from sim.world import world_config_from_mapping

        world_config = world_config_from_mapping({}, source="defaults")
    click.echo(f"world {config.world} does not exist yet: generating it from {config.world_config} (seed {world_config.seed})", err=True)
    from sim.world.generate import generate_world  # pandas and tqdm only when a world is made

    generate_world(world_config, config.world, progress=True)


def _check_served_world(description: dict[str, object], config: EnvConfig) -> None:
    """Refuse a service that serves another world: its answers would be ids of other tracks.

    A service that does not say (the course's) is trusted.
    """
    from contracts.catalog import world_fingerprint

    served = description.get("world")
    ours = world_fingerprint(config.world)
    if served is not None and served != ours:
        raise click.ClickException(
            f"the service at http://{config.service.host}:{config.service.port} serves another world (fingerprint {served}, "
            f"{description.get('tracks', '?')} tracks) than this run's {config.world} (fingerprint {ours}); "
            f"restart it with `botify serve --world {config.world}`, or point `world` in the run's config at its world"
        )


def _client_spec(recommender: str, artifact: str | None, log_path: Path | None) -> ClientSpec:
    if recommender == "remote":
        return ClientSpec("remote")
    if recommender == "dummy":
        return ClientSpec("dummy")
    if recommender.startswith("local:") and len(recommender) > len("local:"):
        return ClientSpec("local", recommender.removeprefix("local:"), artifact, record=log_path is not None)
    raise click.BadParameter(
        f"{recommender!r}: use remote, console, dummy or local:<registry name> (e.g. local:sticky_artist)", param_hint="--recommender"
    )


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--episodes", type=click.IntRange(min=1), default=2000, show_default=True, help="Listener arrivals (sessions) per simulated day.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, show_default=True, help="Simulator config (YAML).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of arrivals and listener decisions (common random numbers).")
@click.option("--host", default=None, help="botify host (overrides the config; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="botify port (overrides the config; default 5001).")
@click.option("--recommender", default="remote", show_default=True, help="remote (botify over HTTP), console (pick tracks by hand), dummy (random, no service) or local:<registry name> (in-process).")
@click.option("--artifact", default=None, help="Artifact directory for a trainable local:<name> recommender.")
@click.option("--days", type=click.IntRange(min=1), default=None, help="Simulate this many days without pausing (default: 1 day; `single` pauses after each day when run in a terminal without --days).")
@click.option("--start-day", type=click.IntRange(min=1), default=1, show_default=True, help="Number of the first simulated day (continue a timeline after a redeploy).")
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=None, help="local:<name> only: write the events to this DuckDB file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def main(ctx: click.Context, **options: object) -> None:
    """Simulate listeners arriving over simulated days and asking botify for tracks.

    Without a subcommand it runs `single`. At the end it prints, per day and treatment, the
    sessions, mean session time and mean tracks per session with standard errors, then the
    wall time and steps/s. The same seed and service config give the same sessions.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = options
    if ctx.invoked_subcommand is None:
        ctx.invoke(single)


@main.command()
@click.option("--no-pause", is_flag=True, help="Never wait for Enter between days.")
@click.pass_obj
def single(obj: dict, no_pause: bool) -> None:
    """One process; pauses after each simulated day so you can retrain and redeploy."""
    interactive = obj["days"] is None and not no_pause and sys.stdin.isatty()
    _simulate(obj, processes=1, interactive=interactive)


@main.command()
@click.option("--processes", type=click.IntRange(min=1, max=64), default=2, show_default=True, help="Parallel shards (processes).")
@click.pass_obj
def multi(obj: dict, processes: int) -> None:
    """Parallel shards of each day's arrivals, results merged (same sessions as `single`)."""
    _simulate(obj, processes=processes, interactive=False)


def _simulate(obj: dict, processes: int, interactive: bool) -> None:
    try:
        config = _load_config(obj["config_path"], obj["host"], obj["port"])
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if obj["recommender"] == "console":
        from sim.run.console import run_console

        _ensure_world(config)
        run_console(config, seed=obj["seed"], day=obj["start_day"])
        return
    spec = _client_spec(obj["recommender"], obj["artifact"], obj["log_path"])
    if obj["log_path"] is not None:
        if spec.kind != "local":
            raise click.BadParameter("--log is for local:<name> runs; botify writes its own log", param_hint="--log")
        _check_local_log(obj["log_path"])
    _ensure_world(config)
    description = None
    if spec.kind == "remote":
        probe = RemoteClient(config.service)
        try:
            description = probe.describe()
        except ServiceUnavailable as error:
            raise click.ClickException(str(error)) from None
        finally:
            probe.close()
        _check_served_world(description, config)
    elif spec.kind == "local":
        description = {"recommender": spec.name}

    days = obj["days"] or 1
    first = obj["start_day"]
    started = time.perf_counter()
    try:
        if processes == 1:
            results = _run_inline(config, obj, spec, first, days, interactive)
        else:
            jobs = [
                ShardJob(config, obj["seed"], tuple(range(first, first + days)), obj["episodes"], spec, shard, processes)
                for shard in range(processes)
            ]
            click.echo(f"simulating {obj['episodes']} arrivals/day for {days} day(s) in {processes} shards...", err=True)
            results = ProcessExecutor(processes).map(run_shard, jobs)
    except ServiceError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # a recommender's or the registry's error in local mode
        from recommenders.registry import RegistryError

        if isinstance(error, RegistryError | FileNotFoundError):
            raise click.ClickException(str(error)) from None
        raise
    wall = time.perf_counter() - started
    _report(results, description, wall)
    if obj["log_path"] is not None:
        _write_local_log(obj["log_path"], results, config.world, spec.name)


def _run_inline(config: EnvConfig, obj: dict, spec: ClientSpec, first: int, days: int, interactive: bool) -> list[ShardResult]:
    """One shard in this process, with a progress bar; interactive runs pause after every day."""
    bar = tqdm(total=obj["episodes"], desc="sessions", unit="session", disable=obj["quiet"], leave=False)

    def before_day(day: int) -> bool:
        if interactive and day > first:
            bar.clear()
            if not click.confirm(f"day {day - 1} done. Retrain/redeploy now if you like; simulate day {day}?", default=True):
                return False
        bar.reset(total=obj["episodes"])
        bar.set_description(f"day {day}")
        return True

    job = ShardJob(config, obj["seed"], itertools.count(first) if interactive else range(first, first + days), obj["episodes"], spec)
    try:
        return [run_shard(job, on_session=lambda _: bar.update(1), before_day=before_day)]
    finally:
        bar.close()


def _report(results: list[ShardResult], description: dict | None, wall: float) -> None:
    records = [r for result in results for r in result.records]
    records.sort(key=lambda r: r.session)
    users = np.array([r.user for r in records], dtype=np.int64)
    table = summarize(records, treatment_labels(description, users))
    click.echo(render(table))
    steps = sum(r.tracks for r in records)
    served = sum(result.served for result in results)
    batches = sum(result.batches for result in results)
    click.echo(
        f"\n{len(records)} sessions, {steps} recommendations listened, {served} requests in {batches} batches; "
        f"wall time {wall:.2f} s, {steps / wall:,.0f} steps/s"
    )


def _check_local_log(log_path: Path) -> None:
    """Create or check the local run's log before simulating, so a bad --log costs no run."""
    from contracts.eventlog.layout import LogError, init_log

    try:
        init_log(log_path)
    except LogError as error:
        raise click.ClickException(str(error)) from None


def _write_local_log(log_path: Path, results: list[ShardResult], world: Path, recommender: str) -> None:
    from contracts.eventlog.layout import LogError
    from sim.run.locallog import write_local_log

    events = [e for result in results for e in result.events]
    try:
        write_local_log(log_path, events, world, recommender)
    except LogError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"events written to {log_path}")


if __name__ == "__main__":
    main()
