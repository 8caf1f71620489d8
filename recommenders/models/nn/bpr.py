"""The BPR network and its training loop (Rendle et al., "BPR: Bayesian Personalized Ranking
from Implicit Feedback", UAI 2009).

Shapes: U users (internal indices 0..U-1), N tracks (external ids), D `embedding_dim`. The
score of track i for user u is x_ui = <p_u, q_i> + b_i; each liked (u, i) is paired with
`negatives` tracks j drawn uniformly from those u did not like, and the loss is
-mean(log sigmoid(x_ui - x_uj)) plus `l2` times the mean squared norm of the batch's embeddings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from recommenders import metrics
from recommenders.models.config import BPRKNNConfig
from recommenders.models.nn import TrainingError
from recommenders.models.nn.training import EarlyStopping, cpu_threads, fit_epochs, generator, resolve_device, to_numpy

logger = logging.getLogger(__name__)

EMBEDDING_INIT_STD = 0.1


class BPRNet(nn.Module):
    """User and track embeddings (U, D), (N, D) plus a track bias (N, 1)."""

    def __init__(self, n_users: int, n_tracks: int, dim: int) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_tracks, dim)
        self.bias = nn.Embedding(n_tracks, 1)
        nn.init.normal_(self.users.weight, std=EMBEDDING_INIT_STD)
        nn.init.normal_(self.items.weight, std=EMBEDDING_INIT_STD)
        nn.init.zeros_(self.bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) users, (B, K) items -> (B, K) scores."""
        return (self.users(users).unsqueeze(1) * self.items(items)).sum(-1) + self.bias(items).squeeze(-1)


@dataclass(frozen=True)
class Validation:
    """Held-out likes: user `users[v]` liked `positives[v]`, to be ranked among `negatives[v]` (V, M)."""

    users: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def _member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    position = np.clip(np.searchsorted(sorted_keys, keys), 0, max(len(sorted_keys) - 1, 0))
    return sorted_keys[position] == keys if len(sorted_keys) else np.zeros(keys.shape, dtype=bool)


def train_bpr(
    n_users: int,
    n_tracks: int,
    users: np.ndarray,
    items: np.ndarray,
    validation: Validation,
    config: BPRKNNConfig,
    device: str = "cpu",
    progress: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    """Train BPR on the liked pairs (users[k], items[k]); return (weights, per-epoch history).

    With a validation set, training stops after `early_stopping_patience` epochs without a better
    validation MRR and the weights of the best epoch are returned; otherwise those of the last epoch.
    """
    if len(users) == 0:
        raise TrainingError("BPR needs liked tracks to learn from; the training log has none")
    torch_device = resolve_device(device)
    with cpu_threads(config.threads):
        rng = generator(config.seed)
        net = BPRNet(n_users, n_tracks, config.embedding_dim).to(torch_device)
        optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        liked_keys = np.unique(users.astype(np.int64) * n_tracks + items)
        anchors_users = np.repeat(users.astype(np.int64), config.negatives)
        anchors_items = np.repeat(items.astype(np.int64), config.negatives)
        n = len(anchors_users)
        batch = min(config.batch_size, n)
        n_batches = -(-n // batch)

        def train_epoch(bar: tqdm) -> float:
            negatives = sample_negatives(anchors_users, liked_keys, n_tracks, rng)
            order = torch.randperm(n, generator=rng).numpy()
            total = 0.0
            for step in range(n_batches):
                index = order[step * batch : (step + 1) * batch]
                u = torch.from_numpy(anchors_users[index]).to(torch_device)
                pair = torch.from_numpy(np.stack([anchors_items[index], negatives[index]], axis=1)).to(torch_device)
                scores = net(u, pair)
                loss = -nn.functional.logsigmoid(scores[:, 0] - scores[:, 1]).mean()
                if config.l2 > 0:
                    loss = loss + config.l2 * (net.users(u).pow(2).sum(-1).mean() + net.items(pair).pow(2).sum(-1).mean())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item()
                bar.update(1)
                bar.set_postfix(loss=f"{total / (step + 1):.4f}")
            return total / n_batches

        validate = (lambda: {"val_mrr": validation_mrr(net, validation, torch_device)}) if len(validation) else None
        fitted = fit_epochs(
            net, train_epoch, validate, EarlyStopping("val_mrr", "max", patience=config.early_stopping_patience),
            epochs=config.epochs, steps=n_batches, name="bpr", device=torch_device, optimizer=optimizer, progress=progress, on_epoch=on_epoch,
        )
        return to_numpy(net), fitted.history


def sample_negatives(users: np.ndarray, liked_keys: np.ndarray, n_tracks: int, rng: torch.Generator) -> np.ndarray:
    """One track per entry of `users` (internal indices), drawn uniformly from the tracks that
    user did not like (`liked_keys`: sorted user * n_tracks + track).

    Rejection sampling: every draw is uniform over the catalog, and only the draws that hit a
    liked pair are drawn again, until none does, so each negative is uniform over the user's
    unliked tracks. Raises TrainingError for a user who liked every track (no negative exists).
    """
    users = users.astype(np.int64, copy=False)
    liked_per_user = np.bincount(liked_keys // n_tracks, minlength=int(users.max(initial=-1)) + 1)
    full = np.flatnonzero(liked_per_user[users] >= n_tracks) if len(users) else np.array([], dtype=np.int64)
    if len(full):
        raise TrainingError(f"BPR needs a track each user did not like to contrast with; user {users[full[0]]} (internal index) liked all {n_tracks}")
    negatives = torch.randint(n_tracks, (len(users),), generator=rng).numpy()
    redraw = np.flatnonzero(_member(users * n_tracks + negatives, liked_keys))
    while len(redraw):
        negatives[redraw] = torch.randint(n_tracks, (len(redraw),), generator=rng).numpy()
        redraw = redraw[_member(users[redraw] * n_tracks + negatives[redraw], liked_keys)]
    return negatives


def validation_mrr(net: BPRNet, validation: Validation, device: torch.device) -> float:
    """MRR of each held-out like among its sampled negatives (exact ties favour the positive)."""
    net.eval()
    with torch.no_grad():
        candidates = np.concatenate([validation.positives[:, None], validation.negatives], axis=1)
        scores = net(torch.from_numpy(validation.users).to(device), torch.from_numpy(candidates).to(device)).cpu().numpy()
    ranked = np.take_along_axis(candidates, np.argsort(-scores, axis=1, kind="stable"), axis=1)
    return metrics.mrr(ranked, validation.positives)
