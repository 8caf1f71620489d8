"""`recommenders train NAME`: fit a trainable recommender on the event log and save its artifacts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from contracts.config import Strict
from recommenders import registry
from recommenders.base import Fittable
from recommenders.commands.common import day_range, open_catalog, read_sessions
from recommenders.models.config import ConfigError, load_config
from recommenders.models.nn import DependencyNotInstalled, TrainingError
from recommenders.models.sessions import SessionLogError
from recommenders.tracking import open_tracker, tracking_options


@click.command("train")
@click.argument("name")
@click.option("--events", type=click.Path(path_type=Path), required=True, help="The event log: a DuckDB file (table `events`) or its Parquet export.")
@click.option("--world", type=click.Path(path_type=Path), required=True, help="The world directory the log was simulated in (its public catalog).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Artifact directory to write (created if missing).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="Training config (YAML); keys and defaults in docs/learned.md.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Override the config's seed.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the config's maximum number of epochs.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where torch trains.")
@click.option("--holdout-days", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leave the last N simulated days out of training, for `recommenders evaluate`.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Override the config's torch CPU thread count (default 1; the weights depend on it, recorded in model.json).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@tracking_options("train")
def train(
    name: str, events: Path, world: Path, out: Path, config_path: Path | None, seed: int | None, epochs: int | None,
    device: str, holdout_days: int, threads: int | None, quiet: bool, tracking_uri: str, mlflow_experiment: str, no_track: bool,
) -> None:
    """Train the recommender registered as NAME (dssm, bpr_knn, top_pop, ...) on the event log.

    Reads the log, keeps every simulated day but the last --holdout-days for training, fits with
    a progress bar per epoch, writes the artifacts to --out (model.json: config and training
    facts; weights.npz: numpy arrays) and prints a summary. Serve the directory as the
    treatment's artifact in config/experiments.yml. Same log, config, seed and thread count
    give the same artifact. The run is recorded in MLflow (--tracking-uri; off with --no-track):
    the config and inputs as parameters, the per-epoch history and the held-out figures as
    metrics, the artifact directory as artifacts.
    """
    try:
        cls = registry.get_class(name)
    except registry.RegistryError as error:
        raise click.ClickException(str(error)) from None
    if not issubclass(cls, Fittable):
        raise click.ClickException(f"recommender {name!r} is not trainable (it has no fit / save / load); nothing to train")
    config_class = cls.config_class
    options: dict[str, Any] = {}
    if config_class is not None:
        try:
            config: Strict = load_config(config_class, config_path, seed=seed, epochs=epochs, threads=threads)
        except ConfigError as error:
            raise click.ClickException(str(error)) from None
        options = {"config": config, "device": device, "progress": not quiet}
    elif config_path is not None or seed is not None or epochs is not None or threads is not None or device != "cpu":
        raise click.ClickException(f"recommender {name!r} takes no training config: drop --config, --seed, --epochs, --threads and --device")
    catalog = open_catalog(world)
    log = read_sessions(events, catalog)
    try:
        train_log, held_out = log.split_days(holdout_days)
    except SessionLogError as error:
        raise click.ClickException(str(error)) from None
    if train_log.n_sessions == 0:
        raise click.ClickException(f"event log {events} has no sessions to train on")
    click.echo(
        f"{name}: training on {len(train_log)} events, {train_log.n_sessions} sessions of {len(np.unique(train_log.user))} users "
        f"({day_range(train_log)})" + (f"; holding out {held_out.n_sessions} sessions ({day_range(held_out)})" if holdout_days else "")
    )
    recommender = cls(catalog)
    tracker = open_tracker(tracking_uri, mlflow_experiment, f"train {name}", enabled=not no_track, tags={"command": "train", "model": name})
    with tracker:
        tracker.log_params({
            "model": name, "events": str(events), "world": str(world), "holdout_days": holdout_days, "device": device,
            "train_sessions": train_log.n_sessions, **({"config": options["config"].model_dump(mode="json")} if options else {}),
        })
        started = time.perf_counter()
        try:
            recommender.fit(train_log if config_class is not None else train_log.to_frame(), **options)
            recommender.save(out)
        except (TrainingError, DependencyNotInstalled, SessionLogError) as error:
            raise click.ClickException(str(error)) from None
        seconds = time.perf_counter() - started
        tracker.log_history(getattr(recommender, "history", None) or [])
        data = getattr(recommender, "data", None) or {}
        tracker.log_metrics({"train_seconds": seconds, **(data.get("metrics") or {})})
        tracker.log_artifacts(out, "artifact")
    for line in summary(recommender, out, seconds):
        click.echo(line)
    if tracker.run_id is not None:
        click.echo(f"  tracked: run {tracker.run_id} in {tracking_uri}")


def summary(recommender: Any, out: Path, seconds: float) -> list[str]:
    """The closing lines of `train`: epochs, the best validation figure, time per epoch, the artifact."""
    lines = [f"trained in {seconds:.1f} s"]
    history = getattr(recommender, "history", None) or []
    if history:
        per_epoch = float(np.mean([record["seconds"] for record in history]))
        if "val_loss" in history[0]:
            best = min(history, key=lambda record: record["val_loss"])
            lines.append(f"  epochs: {len(history)}, best validation loss {best['val_loss']:.4f} at epoch {best['epoch']} "
                         f"(train loss {best['train_loss']:.4f}); {per_epoch:.2f} s per epoch")
        elif "val_mrr" in history[0]:
            valid = [record for record in history if np.isfinite(record["val_mrr"])]
            best = max(valid, key=lambda record: record["val_mrr"]) if valid else history[-1]
            lines.append(f"  epochs: {len(history)}, best validation MRR {best['val_mrr']:.4f} at epoch {best['epoch']} "
                         f"(train loss {best['train_loss']:.4f}); {per_epoch:.2f} s per epoch")
    data = getattr(recommender, "data", None) or {}
    lines.extend(held_out_lines(data.get("metrics") or {}))
    if "mean_neighbours" in data:
        lines.append(f"  pairing: {data['paired_users']} users, {data['mean_neighbours']:.1f} neighbours and "
                     f"{data['mean_candidates']:.1f} candidate tracks per user on average")
    size = sum(path.stat().st_size for path in out.iterdir() if path.is_file())
    lines.append(f"  artifact: {out} ({', '.join(sorted(path.name for path in out.iterdir() if path.is_file()))}; {size / 1e6:.1f} MB)")
    return lines


def held_out_lines(metrics: dict[str, Any]) -> list[str]:
    """Held-out figures of the content-based models (`tags`, `content`), when the training produced them."""
    if "test_macro_ap" in metrics:
        return [
            f"  held-out tracks: {metrics['test_tracks']}; macro AP {metrics['test_macro_ap']:.4f} "
            f"(tag-frequency baseline {metrics['test_baseline_macro_ap']:.4f}); dynamic-threshold tags: "
            f"precision {metrics['assigned_precision']:.3f}, recall {metrics['assigned_recall']:.3f}, "
            f"{metrics['assigned_tags_per_track']:.1f} per track",
        ]
    if "test_recall@10" not in metrics:
        return []
    lines = [f"  held-out tracks: {metrics['test_tracks']} of {metrics['warm_tracks']} with behaviour vectors "
             f"(chance Recall@10 {metrics['chance_recall@10']:.4f})",
             f"  {'retrieval':<28}{'Recall@10':>10}{'Recall@50':>10}{'F2':>8}{'selected':>10}"]
    for prefix, label in (("test", "content -> behaviour"), ("content_only", "content -> content"), ("baseline", "mean frames (no training)")):
        lines.append(f"  {label:<28}{metrics[f'{prefix}_recall@10']:>10.4f}{metrics[f'{prefix}_recall@50']:>10.4f}"
                     f"{metrics[f'{prefix}_f2']:>8.4f}{metrics[f'{prefix}_selected']:>10.1f}")
    if "query" in metrics:
        lines.append(f"  served: content -> {metrics['query']} (the better side on {metrics['val_tracks']} validation tracks; "
                     f"weights of epoch {metrics['best_epoch']}, 0 = untrained)")
    return lines
