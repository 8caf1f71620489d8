"""How much can a trained content encoder gain over the mean of a track's frames, in this world?

The world writes frame t of a track as taste @ P + a track-level nuisance + a section offset +
noise (sim/world/generate.py), so all a track's frames say about its taste is in their mean,
up to the fixed projection P. This script bounds what any encoder can add: it compares, on
query tracks drawn at random, the retrieval of the tracks nearest in hidden taste by

- the mean of frames (the untrained baseline of `recommenders train content`), and
- an oracle linear read-out of that mean, fitted by least squares on the hidden tastes of
  every track (which no encoder trained on one day of logs can beat by much: it sees the
  same mean and far fewer labels),

and prints Recall@10 of both with their standard errors, and the standard error the content
model's own held-out test (a few dozen tracks) has.

    python scripts/content_ceiling.py --world data/world --queries 2000
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from sim.world import World


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def nearest(space: np.ndarray, queries: np.ndarray, k: int, chunk: int = 200) -> np.ndarray:
    """(len(queries), k) the k nearest tracks of each query in `space` by cosine, itself excluded."""
    normed = unit(space).astype(np.float32)
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        scores = normed[q] @ normed.T
        scores[np.arange(len(q)), q] = -np.inf
        out.append(np.argpartition(-scores, k, axis=1)[:, :k])
    return np.concatenate(out)


def recall_at(space: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """Per query: the share of its `truth` tracks among its k nearest in `space`."""
    top = nearest(space, queries, k)
    return np.array([len(np.intersect1d(top[i], truth[i])) / truth.shape[1] for i in range(len(queries))])


@click.command()
@click.option("--world", type=click.Path(path_type=Path, exists=True), default=Path("data/world"), show_default=True)
@click.option("--queries", type=click.IntRange(min=10), default=2000, show_default=True)
@click.option("--relevant", type=click.IntRange(min=1), default=20, show_default=True, help="Nearest tracks in hidden taste per query.")
@click.option("--seed", type=int, default=0, show_default=True)
def main(world: Path, queries: int, relevant: int, seed: int) -> None:
    w = World(world)
    catalog = w.catalog
    offsets = np.asarray(catalog._frame_offsets)
    frames = np.asarray(catalog._frames, dtype=np.float32)
    mean = np.add.reduceat(frames, offsets[:-1], axis=0) / np.diff(offsets)[:, None]
    taste = np.asarray(w.taste, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picked = rng.choice(catalog.n_tracks, size=queries, replace=False)
    truth = nearest(taste, picked, relevant)
    readout, *_ = np.linalg.lstsq(np.c_[mean, np.ones(len(mean))], taste, rcond=None)
    decoded = np.c_[mean, np.ones(len(mean))] @ readout
    for label, space in (("mean of frames (untrained baseline)", mean), ("oracle linear read-out of the mean", decoded), ("hidden taste itself (the ceiling)", taste)):
        r = recall_at(space, picked, truth, 10)
        click.echo(f"{label:<40} Recall@10 {r.mean():.4f} ± {r.std(ddof=1) / np.sqrt(len(r)):.4f} (s.e., {len(r)} queries)")
    base = recall_at(mean, picked, truth, 10)
    for n in (14, 50, 200):
        click.echo(f"s.e. of a Recall@10 measured on {n:>3} held-out tracks: {base.std(ddof=1) / np.sqrt(n):.4f}")


if __name__ == "__main__":
    main()
