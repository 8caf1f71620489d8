"""Training of the tag model: 256 tag probabilities of a track from its content frames.

A transformer over the frame sequence, attention pooling and a feed-forward head
(`frames.TagNet`), trained with a class-weighted binary cross-entropy (weight of a tag =
1 / its training frequency, normalised to mean 1) on the tracks whose tags are observed, with
random crops, reversal, roll, frame masking and mixup as augmentations (the tag write-up).
On a CUDA device it trains in float16 autocast with loss scaling; gradients are clipped on
every device.

Labelled tracks are split once (seeded) into train / validation / test. The epoch with the
best validation macro AP is kept; the test split is scored at the end, against the trivial
baseline that gives every track each tag's training frequency.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from contracts.catalog import Catalog
from recommenders.evaluation.content import frequency_baseline, macro_average_precision
from recommenders.models.content_config import TagModelConfig
from recommenders.models.frame_store import FrameStore, length_bucketed_batches
from recommenders.models.nn import TrainingError
from recommenders.models.nn import augment as aug
from recommenders.models.nn.amp import Stepper, autocast, encode_store, flush_denormals, seed_everything
from recommenders.models.nn.encoders import TagNet
from recommenders.models.nn.training import EarlyStopping, cpu_threads, fit_epochs, resolve_device, to_numpy
from recommenders.models.selection import assign_tags

logger = logging.getLogger(__name__)

MIN_LABELLED = 20


@dataclass
class TrainedTags:
    """What training produces: numpy weights, the split (catalog ids), metrics and history."""

    weights: dict[str, np.ndarray]
    split: dict[str, np.ndarray]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def build_net(frame_dim: int, n_tags: int, config: TagModelConfig) -> TagNet:
    """A fresh `TagNet` shaped by `config`."""
    return TagNet(frame_dim, n_tags, config.encoder, config.head_hidden, config.head_dropout)


def load_net(weights: dict[str, np.ndarray], frame_dim: int, n_tags: int, config: TagModelConfig) -> TagNet:
    """A `TagNet` in eval mode on the CPU with the given numpy weights."""
    net = build_net(frame_dim, n_tags, config)
    net.load_state_dict({name: torch.from_numpy(np.asarray(value)) for name, value in weights.items()})
    return net.eval()


def split_rows(n: int, config: TagModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Rows 0..n-1 split into sorted "train", "val" and "test" (fractions from the config)."""
    order = rng.permutation(n)
    n_test = max(1, int(round(n * config.test_fraction)))
    n_val = max(1, int(round(n * config.val_fraction)))
    train = order[n_test + n_val :]
    if config.max_train_tracks is not None:
        train = train[: config.max_train_tracks]
    return {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test : n_test + n_val]), "train": np.sort(train)}


def class_weights(train_tags: np.ndarray, kind: str) -> np.ndarray:
    """Per-tag BCE weights: 1 / training frequency (floored at one track), normalised to mean 1."""
    if kind == "none":
        return np.ones(train_tags.shape[1], dtype=np.float32)
    frequency = np.maximum(train_tags.mean(axis=0), 1.0 / len(train_tags))
    weights = 1.0 / frequency
    return (weights / weights.mean()).astype(np.float32)


def predict_proba(net: TagNet, store: FrameStore, device: torch.device, config: TagModelConfig) -> np.ndarray:
    """Tag probabilities of every row of `store`, (len(store), n_tags) float32 (full sequences)."""
    net.eval()
    logits = encode_store(store, net, device, config.inference_batch_size, amp=config.amp)
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def train_tags(catalog: Catalog, config: TagModelConfig, device: str = "cpu", progress: bool = False) -> TrainedTags:
    """Train on the catalog's tracks with observed tags; return weights and test metrics.

    Raises `TrainingError` when the catalog has too few labelled tracks or the device is unavailable.
    """
    target = resolve_device(device)
    with cpu_threads(config.threads), flush_denormals():
        return _train(catalog, config, target, progress)


def _train(catalog: Catalog, config: TagModelConfig, target: torch.device, progress: bool) -> TrainedTags:
    rng = seed_everything(config.seed)
    tag_matrix = catalog.tag_matrix()
    labelled = np.flatnonzero(np.diff(tag_matrix.indptr) > 0)
    if len(labelled) < MIN_LABELLED:
        raise TrainingError(f"the catalog has {len(labelled)} tracks with observed tags; the tag model needs at least {MIN_LABELLED}")
    truth = tag_matrix[labelled].toarray() > 0  # (n_labelled, n_tags) bool
    store = FrameStore.from_catalog(catalog, labelled)
    split = split_rows(len(labelled), config, rng)
    train_rows = split["train"]
    weights = torch.as_tensor(class_weights(truth[train_rows], config.class_weights), device=target)

    net = build_net(store.frame_dim, catalog.n_tags, config).to(target)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_rows) // config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch, eta_min=config.min_lr)
    stepper = Stepper(net, optimizer, target, config.amp, config.clip_norm)
    val_store = store.subset(split["val"])
    train_lengths = store.lengths[train_rows]

    def train_epoch(bar: tqdm) -> float:
        total, seen = 0.0, 0
        for batch in length_bucketed_batches(np.minimum(train_lengths, config.max_crop), config.batch_size, rng):
            rows = train_rows[batch]
            frames_np, lengths_np = store.batch(rows, config.max_crop, rng)
            frames = torch.from_numpy(frames_np).to(target)
            targets = torch.from_numpy(truth[rows].astype(np.float32)).to(target)
            frames = aug.permute_frames(frames, lengths_np, config.augment, rng)
            frames = aug.mask_frames(frames, lengths_np, config.augment, rng)
            frames, targets = aug.mixup(frames, targets, lengths_np, config.augment, rng)
            with autocast(target, config.amp):
                logits = net(frames, torch.from_numpy(lengths_np).to(target))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets, weight=weights[None, :])
            if stepper.step(loss):
                schedule.step()
            total += float(loss.detach()) * len(rows)
            seen += len(rows)
            bar.update(1)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        return total / max(seen, 1)

    def validate() -> dict[str, float]:
        return {"val_macro_ap": macro_average_precision(truth[split["val"]], predict_proba(net, val_store, target, config)).macro_ap}

    fitted = fit_epochs(
        net, train_epoch, validate, EarlyStopping("val_macro_ap", "max"),
        epochs=config.epochs, steps=steps_per_epoch, name="tags", device=target, optimizer=optimizer, progress=progress,
    )
    history = fitted.history
    test_truth = truth[split["test"]]
    scores = predict_proba(net, store.subset(split["test"]), target, config)
    model_ap = macro_average_precision(test_truth, scores)
    baseline_ap = macro_average_precision(test_truth, frequency_baseline(truth[train_rows], len(test_truth)))
    assigned = assign_tags(scores, config.thresholds)
    hits = int((assigned & test_truth).sum())
    metrics = {
        "test_macro_ap": model_ap.macro_ap,
        "test_baseline_macro_ap": baseline_ap.macro_ap,
        "test_tags_evaluated": model_ap.n_tags,
        "test_tracks": model_ap.n_tracks,
        "best_epoch": fitted.best_epoch,
        "best_val_macro_ap": fitted.best.get("val_macro_ap", -1.0),
        "assigned_precision": hits / max(int(assigned.sum()), 1),
        "assigned_recall": hits / max(int(test_truth.sum()), 1),
        "assigned_tags_per_track": float(assigned.sum(axis=1).mean()),
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
        "device": str(target),
    }
    net.to("cpu")
    return TrainedTags(to_numpy(net), {name: labelled[rows] for name, rows in split.items()}, metrics, history)


def predict_tracks(
    weights: dict[str, np.ndarray], catalog: Catalog, tracks: np.ndarray, config: TagModelConfig, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Assign tags (dynamic threshold) to `tracks`: CSR (indptr, indices) over those rows."""
    tracks = np.asarray(tracks, dtype=np.int64)
    if not len(tracks):
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int16)
    target = resolve_device(device)
    net = load_net(weights, catalog.frame_dim, catalog.n_tags, config).to(target)
    assigned = assign_tags(predict_proba(net, FrameStore.from_catalog(catalog, tracks), target, config), config.thresholds)
    indptr = np.concatenate([[0], np.cumsum(assigned.sum(axis=1))]).astype(np.int64)
    indices = np.nonzero(assigned)[1].astype(np.int16)
    return indptr, indices
