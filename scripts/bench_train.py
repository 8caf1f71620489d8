"""Training time per epoch of the learned recommenders (`dssm`, `bpr_knn`, `sasrec`, `hstu`) on CPU or GPU.

Trains each model for a fixed number of epochs (early stopping off, so every run does the same
work) with the write-up defaults and prints the seconds of each epoch, the median of the epochs
after the first (the first pays for warm-up: allocator, kernels, caches) and the throughput.
Without --events a log is simulated first: two days of `--episodes` sessions served in-process
by `sticky_artist` (the size of the course's day-one log per day).

    python scripts/bench_train.py --device cpu
    python scripts/bench_train.py --device cuda --events data/demo/events.duckdb

Same figures for the same log, config and device; other processes on the machine make CPU
timings noisy, so compare medians of runs on an idle machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from contracts.catalog import Catalog
from recommenders.dataset import Dataset
from recommenders.models.bpr_knn import BPRKNNRecommender
from recommenders.models.config import BPRKNNConfig, DSSMConfig, HSTUConfig, LikeConfig, SASRecConfig
from recommenders.models.dssm import DSSMRecommender
from recommenders.models.hstu import HSTURecommender
from recommenders.models.nn import TrainingError
from recommenders.models.sasrec import SASRecRecommender
from recommenders.models.sessions import as_session_log

MODELS = ("dssm", "bpr_knn", "sasrec", "hstu")
RECOMMENDERS = {"dssm": DSSMRecommender, "bpr_knn": BPRKNNRecommender, "sasrec": SASRecRecommender, "hstu": HSTURecommender}


def simulate(world: Path, episodes: int, out: Path, seed: int) -> Path:
    """Two simulated days served in-process by sticky_artist, written to `out` (a DuckDB file)."""
    command = [sys.executable, "-m", "sim.run", "--episodes", str(episodes), "--days", "2", "--seed", str(seed),
               "--recommender", "local:sticky_artist", "--log", str(out), "--quiet"]
    click.echo("$ " + " ".join(command), err=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return out


def configs(epochs: int, seed: int, threads: int) -> dict[str, LikeConfig]:
    """Write-up defaults with `epochs` epochs, `threads` torch threads and no early stopping (nor learning-rate drops)."""
    common: dict[str, Any] = {"seed": seed, "threads": threads, "epochs": epochs, "early_stopping_patience": epochs + 1}
    return {
        "dssm": DSSMConfig(**common, lr_reduce_patience=epochs + 1),
        "bpr_knn": BPRKNNConfig(**common),
        "sasrec": SASRecConfig(**common),
        "hstu": HSTUConfig(**common),
    }


def setup(models: str, known: tuple[str, ...], device: str, world: Path) -> list[str]:
    """Validate --models and --device, generate the world if missing; the models to time."""
    import torch

    wanted = [name.strip() for name in models.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(known))
    if unknown or not wanted:
        raise click.BadParameter(f"unknown model(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}", param_hint="--models")
    if device == "cuda" and not torch.cuda.is_available():
        raise click.ClickException(f"device 'cuda' is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    if not (world / "public").is_dir():
        subprocess.run([sys.executable, "-m", "sim.world", "--out", str(world)], check=True)
    return wanted


def hardware(device: str, threads: int) -> str:
    """The device in words, with the torch version."""
    import torch

    where = torch.cuda.get_device_name() if device == "cuda" else f"{threads} torch threads"
    return f"device: {device} ({where}); torch {torch.__version__}"


HEADER = f"{'model':<8} {'epochs':>6} {'first s':>8} {'median s':>9} {'min s':>7} {'total s':>8}  per-epoch seconds"


def time_fit(name: str, model: Any, data: object, config: object, device: str) -> None:
    """Fit `model` and print one row: seconds of the first epoch, median and min of the others, total."""
    started = time.perf_counter()
    try:
        model.fit(data, config=config, device=device)
    except TrainingError as error:
        raise click.ClickException(f"{name}: {error}") from None
    total = time.perf_counter() - started
    seconds = [record["seconds"] for record in model.history]
    later = seconds[1:] or seconds
    click.echo(f"{name:<8} {len(seconds):>6} {seconds[0]:>8.3f} {statistics.median(later):>9.3f} {min(later):>7.3f} {total:>8.2f}  "
               + " ".join(f"{s:.3f}" for s in seconds))


@click.command()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where torch trains.")
@click.option("--world", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True,
              help="World directory (generated with `python -m sim.world` when missing).")
@click.option("--events", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Event log to train on (DuckDB or Parquet); simulated when not given.")
@click.option("--episodes", type=click.IntRange(min=10), default=2000, show_default=True, help="Sessions per simulated day when simulating.")
@click.option("--epochs", type=click.IntRange(min=2), default=5, show_default=True, help="Epochs per model (the first counts as warm-up).")
@click.option("--models", default=",".join(MODELS), show_default=True, help="Comma-separated models to time.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads of training (the config's `threads`).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def main(device: str, world: Path, events: Path | None, episodes: int, epochs: int, models: str, threads: int, seed: int) -> None:
    """Print training seconds per epoch of the learned models (dssm, bpr_knn, sasrec, hstu) on --device."""
    wanted = setup(models, MODELS, device, world)
    catalog = Catalog(world)
    with tempfile.TemporaryDirectory() as scratch:
        log_path = events if events is not None else simulate(world, episodes, Path(scratch) / "events.duckdb", seed)
        log = as_session_log(Dataset.from_log(log_path), catalog.n_tracks)
    click.echo(f"log: {len(log)} events, {log.n_sessions} sessions; world: {catalog.n_tracks} tracks; {hardware(device, threads)}")
    click.echo(HEADER)
    for name in wanted:
        model = RECOMMENDERS[name](catalog)
        time_fit(name, model, log, configs(epochs, seed, threads)[name], device)
    click.echo("total s includes data preparation (and, for bpr_knn, the KNN pairing) besides the epochs")


if __name__ == "__main__":
    main()
