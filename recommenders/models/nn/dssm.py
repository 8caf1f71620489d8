"""The two-tower DSSM network and its training loop (sampled softmax on liked next tracks).

Shapes: B requests, L recent session tracks, H `hidden_dim`, D `embedding_dim`, F the width of
a track's feature vector (3H, plus H with content features, plus 1 for popularity). Track
inputs are external track ids (indices into the per-track tables); users are internal
indices, 0 for a cold user.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from recommenders.models.config import DSSMConfig
from recommenders.models.features import TrackInputs
from recommenders.models.nn import TrainingError
from recommenders.models.nn.training import EarlyStopping, cpu_threads, fit_epochs, generator, resolve_device, to_numpy

logger = logging.getLogger(__name__)

EMBEDDING_INIT_STD = 0.1


class Tower(nn.Sequential):
    """Two dense layers with a bottleneck (half the input width) and LayerNorm: (*, in) -> (*, D)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        middle = max(in_dim // 2, 1)
        super().__init__(nn.Linear(in_dim, middle), nn.ReLU(), nn.Linear(middle, out_dim), nn.LayerNorm(out_dim))


class TrackEncoder(nn.Module):
    """Feature vector of tracks, (*,) external ids -> (*, F): id, artist, mean tag, content, popularity."""

    # Buffers (register_buffer), named here for the type checker.
    track_index: torch.Tensor
    artist_index: torch.Tensor
    tag_table: torch.Tensor
    content_table: torch.Tensor
    popularity_table: torch.Tensor

    def __init__(self, inputs: TrackInputs, n_ids: int, n_artists: int, n_tags: int, hidden: int, content: bool) -> None:
        super().__init__()
        self.ids = nn.Embedding(n_ids + 1, hidden)
        self.artists = nn.Embedding(n_artists + 1, hidden)
        self.tags = nn.Embedding(n_tags + 1, hidden, padding_idx=0)
        self.content = nn.Linear(inputs.content.shape[1], hidden) if content else None
        for embedding in (self.ids, self.artists, self.tags):
            nn.init.normal_(embedding.weight, std=EMBEDDING_INIT_STD)
        with torch.no_grad():
            self.tags.weight[0].zero_()
        self.register_buffer("track_index", torch.from_numpy(inputs.track_index), persistent=False)
        self.register_buffer("artist_index", torch.from_numpy(inputs.artist_index), persistent=False)
        self.register_buffer("tag_table", torch.from_numpy(inputs.tags), persistent=False)
        self.register_buffer("content_table", torch.from_numpy(inputs.content), persistent=False)
        self.register_buffer("popularity_table", torch.from_numpy(inputs.popularity), persistent=False)
        self.width = hidden * (4 if content else 3) + 1

    def forward(self, tracks: torch.Tensor, cold: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.track_index[tracks]
        if cold is not None:
            ids = ids.masked_fill(cold, 0)
        tags = self.tag_table[tracks]
        count = (tags > 0).sum(-1, keepdim=True).clamp(min=1)
        parts = [self.ids(ids), self.artists(self.artist_index[tracks]), self.tags(tags).sum(-2) / count]
        if self.content is not None:
            parts.append(self.content(self.content_table[tracks]))
        parts.append(self.popularity_table[tracks])
        return torch.cat(parts, dim=-1)


class DSSMNet(nn.Module):
    """User tower over (user, recent session tracks), item tower over track features; score = u.v / sqrt(D).

    The user side sees the user's embedding, the listen-time-weighted mean of the recent tracks'
    features (likes), the (1 - time)-weighted mean (skips), the last track's features, the
    session's first track's features (the listener's own pick, the best clue to what the
    session is about) and how much of the last track was heard. Both towers share the track
    features.
    """

    def __init__(self, inputs: TrackInputs, n_users: int, n_ids: int, n_artists: int, n_tags: int, config: DSSMConfig) -> None:
        super().__init__()
        self.tracks = TrackEncoder(inputs, n_ids, n_artists, n_tags, config.hidden_dim, config.content_features)
        self.users = nn.Embedding(n_users + 1, config.hidden_dim)
        nn.init.normal_(self.users.weight, std=EMBEDDING_INIT_STD)
        width = self.tracks.width
        self.user_tower = Tower(config.hidden_dim + 4 * width + 1, config.embedding_dim)
        self.item_tower = Tower(width, config.embedding_dim)
        self.scale = 1.0 / math.sqrt(config.embedding_dim)

    def encode_items(self, tracks: torch.Tensor, cold: torch.Tensor | None = None) -> torch.Tensor:
        """(*,) external track ids -> (*, D) item embeddings."""
        return self.item_tower(self.tracks(tracks, cold))

    def encode_users(self, users: torch.Tensor, recent: torch.Tensor, times: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """(B,) user indices, (B, L) recent tracks newest first (-1 padding), (B, L) times, (B,) first tracks -> (B, D)."""
        valid = (recent >= 0).to(times.dtype)
        features = self.tracks(recent.clamp(min=0))
        liked = times * valid
        skipped = (1.0 - times) * valid
        liked_mean = (liked.unsqueeze(-1) * features).sum(1) / liked.sum(1, keepdim=True).clamp(min=1e-6)
        skipped_mean = (skipped.unsqueeze(-1) * features).sum(1) / skipped.sum(1, keepdim=True).clamp(min=1e-6)
        last = features[:, 0] * valid[:, :1]
        opening = self.tracks(first.clamp(min=0)) * (first >= 0).to(times.dtype).unsqueeze(-1)
        inputs = torch.cat([self.users(users), liked_mean, skipped_mean, last, opening, times[:, :1] * valid[:, :1]], dim=-1)
        return self.user_tower(inputs)


@dataclass(frozen=True)
class Examples:
    """Training examples: the liked next track of a session given what came before.

    Attributes:
        users: (N,) int64 internal user indices (0 = cold).
        recent: (N, L) int64 external ids of the previous session tracks, newest first, -1 padding.
        times: (N, L) float32 fractions listened for `recent`.
        first: (N,) int64 external id of the session's first track.
        targets: (N,) int64 external id of the liked track.
    """

    users: np.ndarray
    recent: np.ndarray
    times: np.ndarray
    first: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, index: np.ndarray) -> Examples:
        return Examples(self.users[index], self.recent[index], self.times[index], self.first[index], self.targets[index])


class _Loss:
    """Sampled softmax over in-batch positives plus uniform catalog negatives, with logQ correction.

    Each candidate's logit is reduced by log(expected times it is sampled) = log(B p(j) + M / N),
    where p is the share of the item among training targets; a candidate equal to the row's own
    target (other than the positive) is masked out.
    """

    def __init__(self, target_share: torch.Tensor, n_tracks: int, negatives: int, correct: bool) -> None:
        self.target_share = target_share
        self.n_tracks = n_tracks
        self.negatives = negatives
        self.correct = correct

    def __call__(self, net: DSSMNet, batch: dict[str, torch.Tensor], sampled: torch.Tensor) -> torch.Tensor:
        users = batch["users"]
        cold_users = batch.get("cold_users")
        if cold_users is not None:
            users = users.masked_fill(cold_users, 0)
        u = net.encode_users(users, batch["recent"], batch["times"], batch["first"])
        targets = batch["targets"]
        candidates = torch.cat([targets, sampled])
        cold = batch.get("cold_tracks")
        if cold is not None:
            cold = torch.cat([cold, torch.zeros_like(sampled, dtype=torch.bool)])
        v = net.encode_items(candidates, cold)
        logits = (u @ v.T) * net.scale
        if self.correct:
            expected = len(targets) * self.target_share[candidates] + self.negatives / self.n_tracks
            logits = logits - torch.log(expected.clamp(min=1e-12))
        positives = torch.arange(len(targets), device=logits.device)
        clash = targets.unsqueeze(1) == candidates.unsqueeze(0)
        clash[positives, positives] = False
        logits = logits.masked_fill(clash, float("-inf"))
        return nn.functional.cross_entropy(logits, positives)


def _tensors(examples: Examples, index: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "users": torch.from_numpy(examples.users[index]).to(device),
        "recent": torch.from_numpy(examples.recent[index]).to(device),
        "times": torch.from_numpy(examples.times[index]).to(device),
        "first": torch.from_numpy(examples.first[index]).to(device),
        "targets": torch.from_numpy(examples.targets[index]).to(device),
    }


def train_dssm(
    inputs: TrackInputs,
    n_users: int,
    n_ids: int,
    n_artists: int,
    n_tags: int,
    train: Examples,
    validation: Examples,
    config: DSSMConfig,
    device: str = "cpu",
    progress: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    """Train the DSSM; return (weights of the best epoch as numpy arrays, per-epoch history).

    Validation loss drives the plateau schedule and early stopping; the weights of the epoch with
    the lowest validation loss are returned.
    """
    if len(train) == 0 or len(validation) == 0:
        raise TrainingError(f"DSSM needs liked next tracks to learn from: {len(train)} for training, {len(validation)} for validation")
    torch_device = resolve_device(device)
    with cpu_threads(config.threads):
        rng = generator(config.seed)
        n_tracks = len(inputs.track_index)
        net = DSSMNet(inputs, n_users, n_ids, n_artists, n_tags, config).to(torch_device)
        counts = np.bincount(train.targets, minlength=n_tracks).astype(np.float32)
        share = torch.from_numpy(counts / counts.sum()).to(torch_device)
        loss_fn = _Loss(share, n_tracks, config.sampled_negatives, config.logq_correction)
        optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        batch = min(config.batch_size, len(train))
        n_batches = max(len(train) // batch, 1)  # the ragged tail is dropped: in-batch negatives want full batches

        def train_epoch(bar: tqdm) -> float:
            order = torch.randperm(len(train), generator=rng).numpy()
            total = 0.0
            for step in range(n_batches):
                index = order[step * batch : (step + 1) * batch]
                tensors = _tensors(train, index, torch_device)
                tensors["cold_users"] = (torch.rand(len(index), generator=rng) < config.user_dropout).to(torch_device)
                tensors["cold_tracks"] = (torch.rand(len(index), generator=rng) < config.track_dropout).to(torch_device)
                sampled = torch.randint(n_tracks, (config.sampled_negatives,), generator=rng).to(torch_device)
                loss = loss_fn(net, tensors, sampled)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item()
                bar.update(1)
                bar.set_postfix(loss=f"{total / (step + 1):.4f}")
            return total / n_batches

        stopping = EarlyStopping(
            "val_loss", "min", patience=config.early_stopping_patience, min_delta=config.early_stopping_min_delta,
            reduce_patience=config.lr_reduce_patience, reduce_min_delta=config.lr_reduce_min_delta, factor=config.lr_reduce_factor,
        )
        fitted = fit_epochs(
            net, train_epoch, lambda: {"val_loss": _validation_loss(net, loss_fn, validation, batch, config, torch_device)}, stopping,
            epochs=config.epochs, steps=n_batches, name="dssm", device=torch_device, optimizer=optimizer, progress=progress, on_epoch=on_epoch,
        )
        return to_numpy(net), fitted.history


def _validation_loss(net: DSSMNet, loss_fn: _Loss, validation: Examples, batch: int, config: DSSMConfig, device: torch.device) -> float:
    """Mean loss over the validation examples, with negatives from a fixed seed (comparable across epochs)."""
    net.eval()
    rng = torch.Generator().manual_seed(config.seed + 1)
    n_tracks = len(loss_fn.target_share)
    total, weight = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(validation), batch):
            index = np.arange(start, min(start + batch, len(validation)))
            sampled = torch.randint(n_tracks, (config.sampled_negatives,), generator=rng).to(device)
            total += float(loss_fn(net, _tensors(validation, index, device), sampled)) * len(index)
            weight += len(index)
    return total / weight
