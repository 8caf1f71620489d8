"""The cold-start experiment: does mixing content-based picks of new tracks into a behaviour
recommender get new tracks played, and what does it cost?

1. generate a world whose catalog grows: `--new-per-day` tracks released on each of days
   1..`--release-days` (the world options `new_tracks_per_day` / `release_days`);
2. day 1: simulate a day of traffic served in-process by `sticky_artist`, the log to train on;
3. train the behaviour model (`--behaviour`: dssm or bpr_knn), the tag model and the content
   model on day 1's log;
4. day 2: serve an experiment whose control is the behaviour model alone and whose treatments
   are `cold_mix` of it with `tags` and with `content`, each restricted to new tracks
   (`new_only`) for a `--share` of the requests; simulate the day through botify;
5. print the `abtest report` of each treatment against the control, and the share of plays
   (and of distinct tracks) in each group that went to new tracks.

Every step is one of the project's own commands, echoed before it runs (see scripts/demo.py).

    python scripts/cold_start.py                     # a few minutes on a laptop CPU
    python scripts/cold_start.py --episodes 4000 --share 0.3
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click
import duckdb
import numpy as np
import pandas as pd
import yaml
from demo import Service, _echo_run, _experiments, module, use_checkout

from contracts.catalog import Catalog
from contracts.columns import EVENTS_TABLE, Columns

EXPERIMENT = "cold_start"
TAG_TRAINING = {"epochs": 4, "max_train_tracks": 6000}  # a quick tag model: minutes, not hours, on a CPU
CONTENT_TRAINING = {"epochs": 15}


def _world(world: Path, tracks: int, users: int, new_per_day: int, release_days: int, seed: int) -> Path:
    """Generate (or reuse, when its config matches) the growing world."""
    config = yaml.safe_load(Path("config/world.yml").read_text())
    config.update(seed=seed, tracks=tracks, users=users, new_tracks_per_day=new_per_day, release_days=release_days)
    if (world / "public").is_dir() and (world / "cold_start.yml").is_file() and yaml.safe_load((world / "cold_start.yml").read_text()) == config:
        click.echo(f"reusing the world in {world}", err=True)
        return world
    world.mkdir(parents=True, exist_ok=True)
    config_path = world.parent / f"{world.name}-config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    _echo_run([*module("sim.world"), "--config", str(config_path), "--out", str(world), "--force", "--quiet"])
    (world / "cold_start.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return world


def _write_yaml(path: Path, mapping: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


def new_track_shares(log: Path, catalog: Catalog, experiment: str, labels: list[str]) -> pd.DataFrame:
    """Per group of `experiment`: plays, the share of plays of new tracks (released after day 0),
    distinct new tracks played, and the share of recommendations that were new tracks."""
    new = pd.DataFrame({"id": np.arange(catalog.n_tracks), "new": catalog.release_day > 0})
    with duckdb.connect(str(log), read_only=True) as connection:
        connection.register("catalog_new", new)
        frame = connection.sql(f"""
            SELECT e.{Columns.EXPERIMENTS}['{experiment}'] AS treatment,
                   count(*) AS plays,
                   avg(CAST(t.new AS DOUBLE)) AS new_play_share,
                   count(DISTINCT CASE WHEN t.new THEN e.{Columns.TRACK} END) AS new_tracks_played,
                   avg(CAST(r.new AS DOUBLE)) AS new_recommendation_share
            FROM {EVENTS_TABLE} e
            JOIN catalog_new t ON t.id = e.{Columns.TRACK}
            LEFT JOIN catalog_new r ON r.id = e.{Columns.RECOMMENDATION}
            WHERE e.{Columns.EXPERIMENTS}['{experiment}'] IS NOT NULL
            GROUP BY 1 ORDER BY 1
        """).df()
    frame.insert(1, "group", [labels[int(t)] if int(t) < len(labels) else f"T{int(t)}" for t in frame["treatment"]])
    return frame


@click.command()
@click.option("--episodes", type=click.IntRange(min=10), default=1500, show_default=True, help="Listener arrivals per simulated day.")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("data/cold_start"), show_default=True,
              help="Where the logs, artifacts and reports go (replaced; the world inside is reused when unchanged).")
@click.option("--tracks", type=click.IntRange(min=100), default=10000, show_default=True, help="Initial catalog size (release day 0).")
@click.option("--users", type=click.IntRange(min=10), default=2000, show_default=True, help="Listeners in the world.")
@click.option("--new-per-day", type=click.IntRange(min=1), default=500, show_default=True, help="Tracks released on each of days 1..--release-days.")
@click.option("--release-days", type=click.IntRange(min=2), default=2, show_default=True, help="Days with releases (day 2, the experiment, needs some).")
@click.option("--behaviour", type=click.Choice(["dssm", "bpr_knn"]), default="dssm", show_default=True, help="The behaviour model: the control.")
@click.option("--share", type=click.FloatRange(0.0, 1.0), default=0.2, show_default=True, help="Share of a treatment's requests answered by the cold-start model.")
@click.option("--port", type=int, default=5011, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def main(episodes: int, workdir: Path, tracks: int, users: int, new_per_day: int, release_days: int, behaviour: str, share: float,
         port: int, seed: int) -> None:
    """Run the cold-start experiment: growing world, day-1 log, training, day-2 A/B with new-track mixing."""
    started = time.perf_counter()
    use_checkout()
    python = sys.executable
    workdir.mkdir(parents=True, exist_ok=True)
    world = _world(workdir / "world", tracks, users, new_per_day, release_days, seed)
    for stale in ("artifacts", "day1.duckdb", "day1.segments", "day2.duckdb", "day2.segments"):  # a log keeps its events in <log>.segments/
        path = workdir / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    catalog = Catalog(world)
    env = yaml.safe_load(Path("config/env.yml").read_text())
    env.update(world=str(world), world_config=str(world.parent / f"{world.name}-config.yml"))
    env_path = _write_yaml(workdir / "env.yml", env)  # the simulator's config, pointing at this world

    click.secho("\nday 1: sticky_artist serves in-process; the log to train on", bold=True)
    day1 = workdir / "day1.duckdb"
    _echo_run([python, "-m", "sim.run", "--config", str(env_path), "--episodes", str(episodes), "--seed", str(seed), "--days", "1", "--start-day", "1",
               "--recommender", "local:sticky_artist", "--log", str(day1), "--quiet"], stdout=sys.stderr)

    click.secho("\ntraining on day 1's log", bold=True)
    artifacts = workdir / "artifacts"
    configs = {"tags": TAG_TRAINING, "content": CONTENT_TRAINING}
    for name in (behaviour, "tags", "content"):
        command = [*module("recommenders"), "train", name, "--events", str(day1), "--world", str(world), "--out", str(artifacts / name), "--quiet"]
        if name in configs:
            command += ["--config", str(_write_yaml(workdir / f"{name}.yml", configs[name]))]
        _echo_run(command)

    click.secho(f"\nday 2: {behaviour} alone against {behaviour} mixed with new tracks from tags / content", bold=True)
    control = {"recommender": behaviour, "artifact": str(artifacts / behaviour)}
    treatments = [control] + [
        {"recommender": "cold_mix", "params": {
            "base": behaviour, "base_artifact": str(artifacts / behaviour),
            "cold": cold, "cold_artifact": str(artifacts / cold), "cold_params": {"new_only": True}, "share": share,
        }}
        for cold in ("tags", "content")
    ]
    labels = [f"C ({behaviour})", f"T1 ({behaviour} + tags)", f"T2 ({behaviour} + content)"]
    experiments = _experiments(workdir / "experiments-day2.yml", EXPERIMENT, treatments)
    day2 = workdir / "day2.duckdb"
    with Service(world, experiments, day2, port, workers=1):
        _echo_run([python, "-m", "sim.run", "--config", str(env_path), "--episodes", str(episodes), "--seed", str(seed + 1), "--port", str(port),
                   "--days", "1", "--start-day", "2", "--quiet"], stdout=sys.stderr)

    click.secho("\nA/B reports", bold=True)
    for index in (1, 2):
        out = workdir / f"report-T{index}.md"
        with out.open("w") as handle:
            _echo_run([*module("abtest"), "report", "--log", str(day2), "--experiment", EXPERIMENT,
                       "--control", "0", "--treatment", str(index), "--format", "markdown"], stdout=handle)
        click.echo(f"### {labels[index]} against {labels[0]}\n")
        click.echo(out.read_text())

    click.secho("new tracks (released after day 0) in each group, day 2", bold=True)
    shares = new_track_shares(day2, catalog, EXPERIMENT, labels)
    click.echo(shares.drop(columns="treatment").to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    click.echo(f"\nnew tracks in the catalog by day 2: {int(((catalog.release_day > 0) & (catalog.release_day <= 2)).sum())} "
               f"of {int((catalog.release_day <= 2).sum())}")
    click.secho(f"\ndone in {time.perf_counter() - started:.0f} s", bold=True)


if __name__ == "__main__":
    main()
