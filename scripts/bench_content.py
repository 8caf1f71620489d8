"""Training time of the content-based models (`tags`, `content`) on CPU or GPU.

Trains each model for a fixed number of epochs with its default config (the tag model on at
most --max-train-tracks labelled tracks when given) and prints the seconds of
each epoch, the median of the epochs after the first (the first pays for warm-up) and the
total, which also counts data preparation, encoding every catalog track and the held-out
evaluation. The content model trains on an event log: without --events, two days of
`--episodes` sessions served in-process by `sticky_artist` are simulated first.

    python scripts/bench_content.py --device cpu
    python scripts/bench_content.py --device cuda --events data/demo/events.duckdb --epochs 12

Same figures for the same log, config and device; other processes on the machine make CPU
timings noisy, so compare medians of runs on an idle machine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
from bench_train import HEADER, hardware, setup, simulate, time_fit

from contracts.catalog import Catalog
from recommenders.dataset import Dataset
from recommenders.models.content import ContentRecommender
from recommenders.models.content_config import ContentModelConfig, TagModelConfig
from recommenders.models.sessions import as_session_log
from recommenders.models.tags import TagRecommender

MODELS = ("tags", "content")


@click.command()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where torch trains.")
@click.option("--world", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True,
              help="World directory (generated with `python -m sim.world` when missing).")
@click.option("--events", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Event log for the content model (DuckDB or Parquet); simulated when not given.")
@click.option("--episodes", type=click.IntRange(min=10), default=2000, show_default=True, help="Sessions per simulated day when simulating.")
@click.option("--epochs", type=click.IntRange(min=2), default=3, show_default=True, help="Epochs per model (the first counts as warm-up).")
@click.option("--max-train-tracks", type=click.IntRange(min=0), default=0, show_default=True,
              help="Cap on the tag model's training tracks (0: every labelled track).")
@click.option("--models", default=",".join(MODELS), show_default=True, help="Comma-separated models to time.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads of training (the config's `threads`).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def main(device: str, world: Path, events: Path | None, episodes: int, epochs: int, max_train_tracks: int, models: str,
         threads: int, seed: int) -> None:
    """Print training seconds per epoch and in total of the tag model and the content model on --device."""
    wanted = setup(models, MODELS, device, world)
    catalog = Catalog(world)
    log = None
    if "content" in wanted:
        with tempfile.TemporaryDirectory() as scratch:
            log_path = events if events is not None else simulate(world, episodes, Path(scratch) / "events.duckdb", seed)
            log = as_session_log(Dataset.from_log(log_path), catalog.n_tracks)
    click.echo(f"world: {catalog.n_tracks} tracks" + (f"; log: {len(log)} events, {log.n_sessions} sessions" if log is not None else "")
               + f"; {hardware(device, threads)}")
    click.echo(HEADER)
    for name in wanted:
        if name == "tags":
            time_fit(name, TagRecommender(catalog), None, TagModelConfig(seed=seed, threads=threads, epochs=epochs, max_train_tracks=max_train_tracks or None), device)
        else:
            time_fit(name, ContentRecommender(catalog), log, ContentModelConfig(seed=seed, threads=threads, epochs=epochs), device)
    click.echo("total s includes data preparation, encoding every catalog track and the held-out evaluation besides the epochs")


if __name__ == "__main__":
    main()
