"""`python -m sim.run`: simulated days of listeners against botify (or botify's service in process).

    python -m sim.run --episodes 2000                                   # one day, one process
    python -m sim.run --episodes 2000 --config config/env.yml multi --processes 4
    python -m sim.run --episodes 100000 --recommender local:sticky_artist multi --processes 8 --executor ray [--address HOST:PORT]
    python -m sim.run --episodes 500 --recommender local:sticky_artist --log data/local.duckdb
    python -m sim.run --episodes 2000 --days 14 --log data/exp.duckdb experiment --experiments config/experiments.yml
    python -m sim.run --episodes 2000 --days 14 --log data/exp.duckdb truth --experiments config/experiments.yml
    python -m sim.run --episodes 500 --recommender local:top_pop --param k=10 --fallback random
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from contracts.config import ConfigError
from sim.config import DEFAULT_ENV_CONFIG, EnvConfig, ServiceOptions, env_config_or_defaults
from sim.run.clients import LOCAL_EXPERIMENT, RemoteClient, ServiceError, ServiceUnavailable
from sim.run.pool_command import ray_pool
from sim.run.ray_pool import PoolError
from sim.run.shards import ClientSpec, ClusterUnavailable, ProcessExecutor, RayExecutor, ShardExecutor, ShardJob, ShardResult, run_shard
from sim.run.summary import render, summarize, treatment_labels
from sim.world import load_world_config


@dataclass(frozen=True)
class RunOptions:
    """The root command's options, as the subcommands receive them (see `main --help`)."""

    episodes: int
    config_path: Path
    world: Path | None
    seed: int
    host: str | None
    port: int | None
    recommender: str
    artifact: str | None
    days: int | None
    start_day: int
    log_path: Path | None
    quiet: bool
    pairs: tuple[str, ...] = ()
    fallback: str | None = None
    urls: tuple[str, ...] = ()


def load_run_config(options: RunOptions) -> EnvConfig:
    """The simulator config with the command line's world, host and port applied; `ConfigError` names a bad one."""
    config = env_config_or_defaults(options.config_path)
    service: dict[str, object] = config.service.model_dump()
    service.update({k: v for k, v in (("host", options.host), ("port", options.port)) if v is not None})
    if options.urls:
        if options.host is not None or options.port is not None:
            raise ConfigError("--url names the services; leave out --host and --port")
        service["replicas"] = [_host_port(url) for part in options.urls for url in part.split(",") if url.strip()]
    update: dict[str, object] = {"service": ServiceOptions.model_validate(service)}
    if options.world is not None:
        if not (options.world / "public").is_dir():
            raise ConfigError(f"--world {options.world} is not a world directory; generate one with `python -m sim.world --out {options.world}`")
        update["world"] = options.world
    return config.model_copy(update=update)


def _host_port(url: str) -> str:
    """"host:port" of a --url given as http://host:port or host:port; `ConfigError` for anything else."""
    from urllib.parse import urlsplit

    text = url.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(f"--url {text!r} is not a botify address such as http://127.0.0.1:5001")
    return f"{parts.hostname}:{port}"


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
            f"restart it with `botify serve --world {config.world}`, or pass this run the service's world with --world"
        )


def client_spec(options: RunOptions) -> ClientSpec:
    """Which client the shards build, from --recommender, --artifact and --log."""
    recommender = options.recommender
    if options.log_path is not None and not recommender.startswith("local:"):
        raise click.BadParameter("--log is for local:<name> runs; botify writes its own log", param_hint="--log")
    if recommender == "remote":
        return ClientSpec("remote")
    if recommender == "dummy":
        return ClientSpec("dummy")
    if (options.pairs or options.fallback) and not recommender.startswith("local:"):
        raise click.BadParameter("--param and --fallback are for local:<name> runs; botify reads its experiments file", param_hint="--param")
    if recommender.startswith("local:") and len(recommender) > len("local:"):
        from recommenders.commands.common import parse_params

        return ClientSpec(
            "local", recommender.removeprefix("local:"), options.artifact, params=parse_params(options.pairs), log=options.log_path,
            fallback=options.fallback,
        )
    raise click.BadParameter(
        f"{recommender!r}: use remote, console, dummy or local:<registry name> (e.g. local:sticky_artist)", param_hint="--recommender"
    )


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--episodes", type=click.IntRange(min=1), default=2000, show_default=True, help="Listener arrivals (sessions) per simulated day.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_ENV_CONFIG, show_default=True, help="Simulator config (YAML).")
@click.option("--world", type=click.Path(file_okay=False, path_type=Path), default=None, help="World directory (overrides the config's `world`; default data/world).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of arrivals and listener decisions (common random numbers).")
@click.option("--host", default=None, help="botify host (overrides the config; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="botify port (overrides the config; default 5001).")
@click.option("--url", "urls", multiple=True, metavar="URL[,URL...]",
              help="botify replicas, e.g. http://127.0.0.1:5001,http://127.0.0.1:5002 (repeatable): each listener is served by one of them (a hash of the user).")
@click.option("--recommender", default="remote", show_default=True, help="remote (botify over HTTP), console (pick tracks by hand), dummy (random, no service) or local:<registry name> (botify's service in process).")
@click.option("--artifact", default=None, help="Artifact directory for a trainable local:<name> recommender.")
@click.option("--days", type=click.IntRange(min=1), default=None, help="Simulate this many days without pausing (default: 1 day; `single` pauses after each day when run in a terminal without --days).")
@click.option("--start-day", type=click.IntRange(min=1), default=1, show_default=True, help="Number of the first simulated day (continue a timeline after a redeploy).")
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=None, help="local:<name> only: write the events to this event log (created, or appended to).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--param", "pairs", multiple=True, metavar="KEY=VALUE", help="local:<name> only: a construction parameter (repeatable), as in the experiments file.")
@click.option("--fallback", default=None, metavar="NAME", help="local:<name> only: the registry name that answers where the recommender fails (logged as errors).")
@click.pass_context
def main(ctx: click.Context, **options: object) -> None:
    """Simulate listeners arriving over simulated days and asking botify for tracks.

    Without a subcommand it runs `single`. At the end it prints, per day and treatment, the
    sessions, mean session time and mean tracks per session with standard errors, then the
    wall time and steps/s. The same seed and service config give the same sessions.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = RunOptions(**options)  # type: ignore[arg-type]
    if ctx.invoked_subcommand is None:
        ctx.invoke(single)


@main.command()
@click.option("--no-pause", is_flag=True, help="Never wait for Enter between days.")
@click.pass_obj
def single(options: RunOptions, no_pause: bool) -> None:
    """One process; pauses after each simulated day so you can retrain and redeploy."""
    interactive = options.days is None and not no_pause and sys.stdin.isatty()
    _simulate(options, processes=1, interactive=interactive)


@main.command()
@click.option("--processes", type=click.IntRange(min=1, max=64), default=2, show_default=True, help="Parallel shards (processes, or Ray tasks).")
@click.option("--executor", type=click.Choice(["process", "ray"]), default="process", show_default=True,
              help="Who runs the shards: local processes, or Ray tasks (a local Ray cluster of --processes CPUs, or the cluster at --address).")
@click.option("--address", default=None, metavar="HOST:PORT", help="--executor ray: the Ray cluster to run on (its head's address, ray://host:port or auto).")
@click.option("--no-pool", is_flag=True,
              help="--address: run the shards as fresh Ray tasks, not on the cluster's warm shard workers (see `ray-pool`).")
@click.pass_obj
def multi(options: RunOptions, processes: int, executor: str, address: str | None, no_pool: bool) -> None:
    """Parallel shards of each day's arrivals, results merged (same sessions as `single`).

    On a running Ray cluster (--executor ray --address), the shards run on warm workers that
    keep the project imported and the world loaded: the first run starts them, later runs of the
    same code reuse them; `ray-pool stop` ends them.
    """
    if address is not None and executor != "ray":
        raise click.BadParameter("--address is for --executor ray", param_hint="--address")
    if no_pool and address is None:
        raise click.BadParameter("--no-pool is for --executor ray --address (a cluster started by the run keeps nothing)", param_hint="--no-pool")
    shards: ShardExecutor = RayExecutor(address, num_cpus=processes, pool=not no_pool) if executor == "ray" else ProcessExecutor(processes)
    _simulate(options, processes=processes, interactive=False, executor=shards)


def _simulate(options: RunOptions, processes: int, interactive: bool, executor: ShardExecutor | None = None) -> None:
    """Run the simulation; a world or an artifact that fails its checks ends it with their one line."""
    from contracts.catalog import CatalogError
    from recommenders.base import ArtifactError

    try:
        _simulate_checked(options, processes, interactive, executor)
    except (CatalogError, ArtifactError, ClusterUnavailable, PoolError) as error:
        raise click.ClickException(str(error)) from None


def _simulate_checked(options: RunOptions, processes: int, interactive: bool, executor: ShardExecutor | None = None) -> None:
    try:
        config = load_run_config(options)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if options.recommender == "console":
        from sim.run.console import run_console

        _ensure_world(config)
        run_console(config, seed=options.seed, day=options.start_day)
        return
    spec = client_spec(options)
    _ensure_world(config)
    description = _describe_client(config, spec)
    if spec.log is not None:
        _start_local_log(spec.log, config.world, spec.name)
    started = time.perf_counter()
    try:
        if processes == 1 and not isinstance(executor, RayExecutor):
            results = _run_inline(config, options, spec, interactive)
        else:
            click.echo(f"simulating {options.episodes} arrivals/day for {options.days or 1} day(s) in {processes} shards...", err=True)
            results = _run_shards(executor or ProcessExecutor(processes), config, options, spec, processes)
            if isinstance(executor, RayExecutor) and executor.created is not None:
                _report_pool(executor, processes)
    except ServiceError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # the registry's or an artifact's error in local mode
        from recommenders.registry import RegistryError

        if isinstance(error, RegistryError | FileNotFoundError):
            raise click.ClickException(str(error)) from None
        raise
    _report(results, description, time.perf_counter() - started)
    if spec.log is not None:
        click.echo(f"events written to {spec.log}")


def _describe_client(config: EnvConfig, spec: ClientSpec) -> dict[str, object] | None:
    """The service's self-description (GET /), checked to serve this run's world; a local run's own."""
    if spec.kind == "local":
        return {"recommender": spec.name}
    if spec.kind != "remote":
        return None
    descriptions = []
    for host, port in config.service.addresses():
        service = config.service.model_copy(update={"host": host, "port": port, "replicas": []})
        probe = RemoteClient(service)
        try:
            descriptions.append(probe.describe())
        except ServiceUnavailable as error:
            raise click.ClickException(str(error)) from None
        finally:
            probe.close()
        _check_served_world(descriptions[-1], config.model_copy(update={"service": service}))
    return descriptions[0]


def _report_pool(executor: RayExecutor, processes: int) -> None:
    """Say whether the run found warm workers or started them (they stay on the cluster)."""
    if executor.created:
        click.echo(
            f"started {executor.created} shard worker(s) on the Ray cluster at {executor.address}; they stay, warm, for later runs "
            f"of this code (`python -m sim.run ray-pool stop --address {executor.address}` ends them)", err=True,
        )
    else:
        click.echo(f"ran on the warm shard workers of the Ray cluster at {executor.address}", err=True)


def _run_shards(executor: ShardExecutor, config: EnvConfig, options: RunOptions, spec: ClientSpec, n_shards: int) -> list[ShardResult]:
    """Every day's arrivals split over `n_shards` shards, run by `executor`."""
    days = tuple(range(options.start_day, options.start_day + (options.days or 1)))
    # Absolute paths: a shard may run in a process started elsewhere (a warm Ray worker keeps its own directory).
    config = config.model_copy(update={"world": Path(config.world).resolve()})
    if spec.log is not None:
        spec = dataclasses.replace(spec, log=spec.log.resolve())
    jobs = [ShardJob(config, options.seed, days, options.episodes, spec, shard, n_shards) for shard in range(n_shards)]
    return executor.map(run_shard, jobs)


def _run_inline(config: EnvConfig, options: RunOptions, spec: ClientSpec, interactive: bool) -> list[ShardResult]:
    """One shard in this process, with a progress bar; interactive runs pause after every day."""
    first = options.start_day
    bar = tqdm(total=options.episodes, desc="sessions", unit="session", disable=options.quiet, leave=False)

    def before_day(day: int) -> bool:
        if interactive and day > first:
            bar.clear()
            if not click.confirm(f"day {day - 1} done. Retrain/redeploy now if you like; simulate day {day}?", default=True):
                return False
        bar.reset(total=options.episodes)
        bar.set_description(f"day {day}")
        return True

    days = itertools.count(first) if interactive else range(first, first + (options.days or 1))
    job = ShardJob(config, options.seed, days, options.episodes, spec)
    try:
        return [run_shard(job, on_session=lambda _: bar.update(1), before_day=before_day)]
    finally:
        bar.close()


def _experiment_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options shared by `experiment` and `truth` (they must match between the two)."""
    for option in reversed([
        click.option("--experiments", "experiments_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
                     help="Experiments file; its serving experiment is served (or replayed)."),
        click.option("--pre-days", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Days before the experiment starts, served by its control's recommender to everyone."),
        click.option("--service-seed", type=int, default=0, show_default=True, help="The service's seed (config/botify.yml `seed`)."),
        click.option("--processes", type=click.IntRange(min=1, max=64), default=1, show_default=True, help="Parallel shards (processes)."),
    ]):
        command = option(command)
    return command


def _experiment_spec(options: RunOptions, experiments_file: Path, pre_days: int, service_seed: int) -> tuple[EnvConfig, object]:
    """The run's config and `ExperimentSpec`, checked; a bad option or file is a ClickException."""
    from sim.run.replay import ExperimentSpec

    if options.log_path is None:
        raise click.UsageError("--log is required: the experiment's event log (its truth is written beside it)")
    days = options.days or 1
    if pre_days >= days:
        raise click.BadParameter(f"--pre-days == {pre_days}, must be < --days ({days}) so that the experiment runs", param_hint="--pre-days")
    try:
        config = load_run_config(options)
        from botify.experiments import load_experiments

        load_experiments(experiments_file)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    _ensure_world(config)
    return config, ExperimentSpec(experiments_file, None, options.start_day + pre_days, service_seed)


@main.command()
@_experiment_options
@click.option("--truth/--no-truth", default=True, show_default=True, help="Also replay every listener under every arm (the truth file).")
@click.pass_obj
def experiment(options: RunOptions, experiments_file: Path, pre_days: int, service_seed: int, processes: int, truth: bool) -> None:
    """Serve an experiments file with botify's service in process and write the events to --log.

    The same sessions as `botify serve --experiments FILE` with the same seeds would log. With
    --pre-days, the first days are served by the control's recommender to everyone (experiment
    `pre` in the log). With --truth (default), the truth file is written beside the log too.
    """
    from sim.run.replay import describe_experiments, simulate_shards

    config, spec = _experiment_spec(options, experiments_file, pre_days, service_seed)
    from botify.experiments import describe, load_experiments

    declared = describe(load_experiments(experiments_file))
    if pre_days:
        declared.append({"experiment": "pre", "treatment": 0, "recommender": declared[0]["recommender"], "serving": False})
    _start_local_log(options.log_path, config.world, "", declared)  # type: ignore[arg-type]
    days = range(options.start_day, options.start_day + (options.days or 1))
    client = ClientSpec("experiment", log=options.log_path, experiment=spec)  # type: ignore[arg-type]
    started = time.perf_counter()
    executor = ProcessExecutor(processes) if processes > 1 else None
    try:
        results = simulate_shards(config, options.seed, days, options.episodes, client, shards=processes, executor=executor)
    except ServiceError as error:
        raise click.ClickException(str(error)) from None
    wall = time.perf_counter() - started
    _report(results, describe_experiments(experiments_file), wall)
    click.echo(f"events written to {options.log_path}")
    if truth:
        _write_truth(options, config, spec, processes, wall)


@main.command()
@_experiment_options
@click.pass_obj
def truth(options: RunOptions, experiments_file: Path, pre_days: int, service_seed: int, processes: int) -> None:
    """Replay an experiment run's listeners under every arm; write the truth beside --log.

    Give the options of the run that wrote the log (episodes, days, start day, seed, config,
    experiments file, pre-days, service seed): `abtest report --truth` then shows each metric's
    true effect beside its estimate.
    """
    config, spec = _experiment_spec(options, experiments_file, pre_days, service_seed)
    _write_truth(options, config, spec, processes, None)


def _write_truth(options: RunOptions, config: EnvConfig, spec: object, processes: int, simulated_s: float | None) -> None:
    from contracts.truth import truth_path, write_truth
    from sim.run.replay import replay

    days = range(options.start_day, options.start_day + (options.days or 1))
    started = time.perf_counter()
    executor = ProcessExecutor(processes) if processes > 1 else None
    try:
        columns = replay(config, options.seed, days, options.episodes, spec, shards=processes, executor=executor)  # type: ignore[arg-type]
    except ServiceError as error:
        raise click.ClickException(str(error)) from None
    wall = time.perf_counter() - started
    path = write_truth(truth_path(options.log_path), columns)  # type: ignore[arg-type]
    ratio = f" ({wall / simulated_s:.2f}x the experiment run)" if simulated_s else ""
    click.echo(f"truth: {len(columns['session'])} sessions replayed under every arm in {wall:.2f} s{ratio}; written to {path}")


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


def _start_local_log(log_path: Path, world: Path, recommender: str, declared: list[dict[str, object]] | None = None) -> None:
    """Create or check a local run's event log and record the run's start in it, as a service does
    at its start; the shards' services then write the events. A bad --log costs no run.
    `declared` overrides the one experiment `local` serving `recommender`."""
    from contracts.catalog import Catalog
    from contracts.eventlog import LogError, init_log
    from contracts.eventlog.writer import record_start, world_row

    if declared is None:
        declared = [{"experiment": LOCAL_EXPERIMENT, "treatment": 0, "recommender": recommender, "serving": True}]
    try:
        record_start(init_log(log_path), declared, time.time_ns() // 1000, world_row(Catalog(world)))
    except LogError as error:
        raise click.ClickException(str(error)) from None


main.add_command(ray_pool)

if __name__ == "__main__":
    main()
