"""Sequential transformers over a session's plays, SASRec and HSTU, and their one training pass.

SASRec: Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018
(https://arxiv.org/abs/1808.09781). HSTU: Zhai et al., "Actions Speak Louder than Words:
Trillion-Parameter Sequential Transducers for Generative Recommendations", ICML 2024
(https://arxiv.org/abs/2402.17152). The details follow RecTools' implementations
(rectools/models/nn/transformers/sasrec.py, hstu.py): left-padded sessions of a fixed length,
a causal mask, learnable positions counted from the newest play, item embeddings shared
between input and output, and a sampled softmax over uniform catalog negatives (and the batch's other targets).

Shapes: B sessions, L `history` positions, D `embedding_dim`, N catalog tracks. Tokens are
external track ids plus one; token 0 is padding. A track's embedding sums the mean of its
observed tags', a projection of its mean content frame, a popularity direction and, where
configured, its id's and its artist's (RecTools' id plus feature item nets): ids alone learn
little from a log where most tracks are never played, and the artist's embedding learns a
sticky logging policy's repeats. Each input position also carries the
fraction of the track listened (a skip is a play heard briefly): the input is
`e(track) sqrt(D) + t w_like + (1 - t) w_skip` (+ the position for SASRec).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from recommenders.models.config import HSTUConfig, SequentialConfig
from recommenders.models.nn import TrainingError
from recommenders.models.nn.training import EarlyStopping, cpu_threads, fit_epochs, generator, resolve_device, to_numpy

logger = logging.getLogger(__name__)

EMBEDDING_INIT_STD = 0.02  # RecTools' and HSTU's initialisation of embeddings


def attention_mask(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L, L) bool, True where query position i may attend to key position j.

    Causal (j <= i) and never to padding; every position may attend to itself, so a padded
    query has one key and its (ignored) output stays finite.
    """
    length = tokens.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
    valid = (tokens > 0).unsqueeze(1)  # (B, 1, L): keys that are real plays
    eye = torch.eye(length, dtype=torch.bool, device=tokens.device)
    return (causal & valid) | eye


def opening_positions(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) bool, True at the session's opening play: the oldest play of a left-padded window.

    A window without padding may have lost its opening to the history limit, so none is
    marked there (training windows cut from a long session's end are full, too).
    """
    valid = tokens > 0
    opening = torch.zeros_like(valid)
    opening[:, 1:] = valid[:, 1:] & ~valid[:, :-1]
    return opening


@dataclass(frozen=True)
class TrackTables:
    """The catalog's side features by external track id (see `recommenders.models.features.TrackInputs`).

    Attributes:
        artist: (N,) int64 artist id + 1, 0 for an artist beyond `n_artists`.
        tags: (N, T) int64 tag id + 1 of the observed tags, 0 as padding.
        content: (N, F) float32 standardised mean content frame.
        popularity: (N, 1) float32 standardised log popularity prior.
        n_artists, n_tags: the embedding tables' sizes (recorded in the artifact).
    """

    artist: np.ndarray
    tags: np.ndarray
    content: np.ndarray
    popularity: np.ndarray
    n_artists: int
    n_tags: int

    @property
    def n_tracks(self) -> int:
        return len(self.artist)

    def by_token(self, table: np.ndarray) -> np.ndarray:
        """`table` with a zero row in front, so that token t (external id t - 1) reads row t and padding reads zeros."""
        return np.concatenate([np.zeros((1, *table.shape[1:]), table.dtype), table])


class SequenceNet(nn.Module):
    """What SASRec and HSTU share: the item table, the listen-fraction input and the scoring.

    Subclasses implement `blocks_forward(x, mask, last=False)`: (B, L, D) inputs and the (B, L, L)
    mask to (B, L, D) outputs, or with `last` to the newest position's (B, 1, D) only.
    """

    # Buffers (register_buffer), named here for the type checker.
    artist_table: torch.Tensor
    tag_table: torch.Tensor
    content_table: torch.Tensor
    popularity_table: torch.Tensor

    def __init__(self, tracks: TrackTables, config: SequentialConfig) -> None:
        super().__init__()
        dim = config.embedding_dim
        self.items = nn.Embedding(tracks.n_tracks + 1, dim, padding_idx=0)
        self.artists = nn.Embedding(tracks.n_artists + 1, dim, padding_idx=0)
        self.tags = nn.Embedding(tracks.n_tags + 1, dim, padding_idx=0)
        for embedding in (self.items, self.artists, self.tags):
            nn.init.normal_(embedding.weight, std=EMBEDDING_INIT_STD)
            with torch.no_grad():
                embedding.weight[0].zero_()
        self.track_ids = config.track_ids
        self.artist_embedding = config.artist_embedding
        self.content = nn.Linear(tracks.content.shape[1], dim)
        nn.init.normal_(self.content.weight, std=EMBEDDING_INIT_STD)  # start as small as the embeddings
        nn.init.zeros_(self.content.bias)
        self.popularity = nn.Parameter(torch.zeros(dim))
        self.register_buffer("artist_table", torch.from_numpy(tracks.by_token(tracks.artist.astype(np.int64))), persistent=False)
        self.register_buffer("tag_table", torch.from_numpy(tracks.by_token(tracks.tags.astype(np.int64))), persistent=False)
        self.register_buffer("content_table", torch.from_numpy(tracks.by_token(tracks.content.astype(np.float32))), persistent=False)
        self.register_buffer("popularity_table", torch.from_numpy(tracks.by_token(tracks.popularity.astype(np.float32))), persistent=False)
        self.like = nn.Parameter(torch.zeros(dim))
        self.skip = nn.Parameter(torch.zeros(dim))
        self.dropout = nn.Dropout(config.dropout)
        self.final_norm = nn.LayerNorm(dim)
        self.scale = math.sqrt(dim)
        self.output_scale = 1.0
        if config.item_tower:
            # DSSM's item tower over the concatenated parts: its LayerNorm output is already of unit
            # scale, so inputs take it as it is and scores are divided by sqrt(D) as DSSM's are.
            width = dim * (2 + self.track_ids + self.artist_embedding) + 1
            self.tower = nn.Sequential(nn.Linear(width, width // 2), nn.ReLU(), nn.Linear(width // 2, dim), nn.LayerNorm(dim))
            self.scale, self.output_scale = 1.0, 1.0 / math.sqrt(dim)
        if config.opening_marker:
            self.opening = nn.Parameter(torch.zeros(dim))

    def blocks_forward(self, x: torch.Tensor, mask: torch.Tensor, last: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def item_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """(*,) tokens -> (*, D): the sum of the id's, the artist's, the observed tags' mean, the
        projected content's and the popularity's embeddings (RecTools' sum of id and feature
        embeddings); zero for padding."""
        tags = self.tag_table[tokens]
        count = (tags > 0).sum(-1, keepdim=True).clamp(min=1)
        present = (tokens > 0).unsqueeze(-1)
        if hasattr(self, "tower"):  # with `item_tower`, the parts are concatenated (ids first) and mapped by the tower
            parts = [self.items(tokens)] if self.track_ids else []
            parts += [self.artists(self.artist_table[tokens])] if self.artist_embedding else []
            parts += [self.tags(tags).sum(-2) / count, self.content(self.content_table[tokens]), self.popularity_table[tokens]]
            return self.tower(torch.cat(parts, dim=-1)) * present.to(parts[0].dtype)
        features = self.content(self.content_table[tokens]) + self.popularity_table[tokens] * self.popularity
        features = features * present.to(features.dtype)
        ids = self.items(tokens) if self.track_ids else 0.0
        artists = self.artists(self.artist_table[tokens]) if self.artist_embedding else 0.0
        return ids + artists + self.tags(tags).sum(-2) / count + features

    def embed(self, tokens: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens and listen fractions -> (B, L, D) block inputs (zero at padding)."""
        t = times.unsqueeze(-1)
        x = self.item_vectors(tokens) * self.scale + t * self.like + (1.0 - t) * self.skip
        if hasattr(self, "opening"):
            x = x + opening_positions(tokens).unsqueeze(-1).to(x.dtype) * self.opening
        return x * (tokens > 0).unsqueeze(-1).to(x.dtype)

    def forward(self, tokens: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens (0 = padding, left-padded), (B, L) listen fractions -> (B, L, D) session states."""
        padded = (tokens > 0).unsqueeze(-1).to(self.items.weight.dtype)
        x = self.blocks_forward(self.dropout(self.embed(tokens, times)), attention_mask(tokens))
        return self.final_norm(x) * padded

    def last_state(self, tokens: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """(B, D) the newest position's state, `forward(tokens, times)[:, -1]` for serving.

        Every block but the last needs all positions (they are the last block's keys and
        values); the last block computes its output for the newest position only.
        """
        padded = (tokens[:, -1:] > 0).unsqueeze(-1).to(self.items.weight.dtype)
        x = self.blocks_forward(self.dropout(self.embed(tokens, times)), attention_mask(tokens), last=True)
        return (self.final_norm(x) * padded)[:, 0]

    def catalog(self, tracks: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D) output embeddings of every catalog track (external id i is row i), or (M, D) of `tracks` (external ids)."""
        if tracks is None:
            tracks = torch.arange(len(self.items.weight) - 1, device=self.items.weight.device)
        vectors = self.item_vectors(tracks + 1)
        return vectors * self.output_scale if self.output_scale != 1.0 else vectors

    def score_last(self, tokens: torch.Tensor, times: torch.Tensor, catalog: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) scores of every catalog track as the next play after the last position (`catalog`: a cached `catalog()`)."""
        return self.last_state(tokens, times) @ (self.catalog() if catalog is None else catalog).T


class SASRecBlock(nn.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a ReLU feed-forward, each residual."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last: bool = False) -> torch.Tensor:
        """(B, L, D) -> (B, L, D); with `last`, the newest position's (B, 1, D) only."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if last:
            q, mask, x = q[:, :, -1:], mask[:, -1:], x[:, -1:]
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask.unsqueeze(1), dropout_p=self.attention_dropout if self.training else 0.0
        )
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, x.shape[1], dim)))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class SASRecNet(SequenceNet):
    """SASRec: learnable positions (counted from the newest play) and `blocks` causal transformer blocks."""

    def __init__(self, tracks: TrackTables, config: SequentialConfig) -> None:
        super().__init__(tracks, config)
        self.positions = nn.Embedding(config.history, config.embedding_dim)
        nn.init.normal_(self.positions.weight, std=EMBEDDING_INIT_STD)
        self.blocks = nn.ModuleList(SASRecBlock(config.embedding_dim, config.heads, config.dropout) for _ in range(config.blocks))

    def embed(self, tokens: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        # Sessions are left-padded to `history`, so position index `history - 1` is always the newest play.
        position = self.positions.weight[self.positions.num_embeddings - length :]
        return super().embed(tokens, times) + position * (tokens > 0).unsqueeze(-1).to(position.dtype)

    def blocks_forward(self, x: torch.Tensor, mask: torch.Tensor, last: bool = False) -> torch.Tensor:
        for index, block in enumerate(self.blocks):
            x = block(x, mask, last=last and index == len(self.blocks) - 1)
        return x


class HSTUBlock(nn.Module):
    """HSTU's sequential transduction unit (Zhai et al. 2024, eqs. 1-3).

    U, V, Q, K = split(SiLU(LayerNorm(x) W)); A = SiLU(Q K^T + b_rel) / L, zero outside the
    mask (pointwise aggregated attention: no softmax); y = x + W_o(Dropout(U * LayerNorm(A V))).
    `b_rel` is a learned bias per relative distance i - j (the paper's time-bucket bias is
    left out: requests carry listen fractions, not timestamps).
    """

    def __init__(self, dim: int, heads: int, linear_dim: int, attention_dim: int, history: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.linear_dim, self.attention_dim = heads, linear_dim, attention_dim
        self.norm = nn.LayerNorm(dim)
        self.uvqk = nn.Linear(dim, heads * (2 * linear_dim + 2 * attention_dim))
        self.relative = nn.Parameter(torch.empty(history).normal_(std=EMBEDDING_INIT_STD))  # bias by distance 0..history-1
        self.attention_norm = nn.LayerNorm(heads * linear_dim)
        self.out = nn.Linear(heads * linear_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last: bool = False) -> torch.Tensor:
        """(B, L, D) -> (B, L, D); with `last`, the newest position's (B, 1, D) only."""
        batch, length, _ = x.shape
        h = self.heads
        u, v, q, k = torch.split(
            F.silu(self.uvqk(self.norm(x))),
            [h * self.linear_dim, h * self.linear_dim, h * self.attention_dim, h * self.attention_dim],
            dim=-1,
        )
        index = torch.arange(length, device=x.device)
        queries = index[-1:] if last else index
        if last:
            u, q, mask, x = u[:, -1:], q[:, -1:], mask[:, -1:], x[:, -1:]
        rows = len(queries)
        scores = torch.einsum("bnhd,bmhd->bhnm", q.reshape(batch, rows, h, -1), k.view(batch, length, h, -1))
        distance = (queries[:, None] - index[None, :]).clamp(min=0, max=len(self.relative) - 1)
        weights = F.silu(scores + self.relative[distance]) / length * mask.unsqueeze(1).to(scores.dtype)
        attended = torch.einsum("bhnm,bmhd->bnhd", weights, v.view(batch, length, h, -1)).reshape(batch, rows, -1)
        return x + self.out(self.dropout(u * self.attention_norm(attended)))


class HSTUNet(SequenceNet):
    """HSTU: `blocks` sequential transduction units; order enters through the relative-distance bias."""

    def __init__(self, tracks: TrackTables, config: HSTUConfig) -> None:
        super().__init__(tracks, config)
        self.blocks = nn.ModuleList(
            HSTUBlock(config.embedding_dim, config.heads, config.linear_dim, config.attention_dim, config.history, config.dropout)
            for _ in range(config.blocks)
        )

    def blocks_forward(self, x: torch.Tensor, mask: torch.Tensor, last: bool = False) -> torch.Tensor:
        for index, block in enumerate(self.blocks):
            x = block(x, mask, last=last and index == len(self.blocks) - 1)
        return x


@dataclass(frozen=True)
class Sequences:
    """Sessions cut into left-padded windows of `history + 1` plays.

    Attributes:
        tokens: (S, L + 1) int64 external track id + 1, 0 at padding, oldest first.
        times: (S, L + 1) float32 fractions listened, 0 at padding.
        weights: (S, L) float32 the weight of the play after position i as a target (1 for a
            liked play by default), 0 where it is none.
    """

    tokens: np.ndarray
    times: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, index: np.ndarray) -> Sequences:
        return Sequences(self.tokens[index], self.times[index], self.weights[index])

    @property
    def targets(self) -> int:
        """How many next plays the windows hold as targets (of any weight)."""
        return int((self.weights > 0).sum())


def _tensors(data: Sequences, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(input tokens, input times, next tokens, liked-target weights, next times) of the windows at `index`."""
    tokens = torch.from_numpy(data.tokens[index]).to(device)
    times = torch.from_numpy(data.times[index]).to(device)
    return tokens[:, :-1], times[:, :-1], tokens[:, 1:], torch.from_numpy(data.weights[index]).to(device), times[:, 1:]


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The mean of `losses` (P,), weighted by `weights` (P,) where given."""
    return losses.mean() if weights is None else (losses * weights).sum() / weights.sum()


def sampled_softmax(
    net: SequenceNet, states: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, in_batch: bool = False, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy of each liked target against shared negatives (weighted by `weights` (P,) where given).

    `states` (P, D) are the positions with a liked next play, `positives` (P,) those plays'
    external ids. Every position scores its target against the same M uniformly sampled
    catalog tracks (RecTools' "sampled_softmax") and, with `in_batch`, against the other
    targets of the batch too (popular tracks are then negatives as often as they are targets,
    as in DSSM's mixed negatives); a negative equal to the target is masked.
    """
    candidates = torch.cat([positives, negatives]) if in_batch else negatives
    positive_logits = (states * net.catalog(positives)).sum(-1, keepdim=True)
    negative_logits = states @ net.catalog(candidates).T
    negative_logits = negative_logits.masked_fill(positives.unsqueeze(1) == candidates.unsqueeze(0), float("-inf"))
    logits = torch.cat([positive_logits, negative_logits], dim=1)
    zeros = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return weighted_mean(F.cross_entropy(logits, zeros, reduction="none"), weights)


def full_softmax(net: SequenceNet, states: torch.Tensor, positives: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of each liked target against every catalog track (RecTools' "softmax").

    Exact where the sampled loss is not: with a few thousand targets and a catalog of tens of
    thousands, uniform samples rarely contain the tracks close to the target that serving must
    rank below it. Shapes as in `sampled_softmax`.
    """
    return weighted_mean(F.cross_entropy(states @ net.catalog().T, positives, reduction="none"), weights)


def listen_loss(net: SequenceNet, states: torch.Tensor, tracks: torch.Tensor, heard: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of the fraction heard of every next play, liked or skipped.

    `states` (P, D) are the positions followed by a play, `tracks` (P,) its external id and
    `heard` (P,) the fraction listened, the soft label of `sigmoid(state . item + bias)`. The
    ranking losses learn from likes only; skips, most of a log served by weak policies, say
    which tracks the same context did not want.
    """
    logits = (states * net.catalog(tracks)).sum(-1) + bias
    return F.binary_cross_entropy_with_logits(logits, heard)


def draw_negatives(config: SequentialConfig, n_tracks: int, rng: torch.Generator, device: torch.device) -> torch.Tensor | None:
    """The uniform negatives of one batch for `sampled_softmax`; None for the full softmax, which needs none."""
    if config.loss == "softmax":
        return None
    return torch.randint(n_tracks, (config.sampled_negatives,), generator=rng).to(device)


def batch_loss(
    net: SequenceNet, batch: tuple[torch.Tensor, ...], config: SequentialConfig, negatives: torch.Tensor | None, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """The configured loss of one batch (`negatives` from `draw_negatives`); with `bias`, plus
    `listen_weight` times the listen-fraction term (`listen_loss`)."""
    tokens, times, targets, weights, next_times = batch
    states = net(tokens, times)  # (B, L, D)
    keep = weights > 0
    weight = weights[keep]
    if negatives is None:
        loss = full_softmax(net, states[keep], targets[keep] - 1, weight)
    else:
        loss = sampled_softmax(net, states[keep], targets[keep] - 1, negatives, config.in_batch_negatives, weight)
    if bias is not None and config.listen_weight > 0:
        played = (targets > 0) & (tokens > 0)
        loss = loss + config.listen_weight * listen_loss(net, states[played], targets[played] - 1, next_times[played], bias)
    return loss


def train_sequential(
    net: SequenceNet,
    name: str,
    n_tracks: int,
    train: Sequences,
    validation: Sequences,
    config: SequentialConfig,
    device: str = "cpu",
    progress: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    """Train `net` with Adam on sampled softmax; return (weights of the best epoch as numpy arrays, history).

    Validation loss (negatives from a fixed seed) drives early stopping through `fit_epochs`.
    The network must be built inside `cpu_threads` after `generator(config.seed)`; use
    `build_and_train`, which does both.
    """
    if train.targets == 0 or validation.targets == 0:
        raise TrainingError(f"{name} needs liked next plays to learn from: {train.targets} for training, {validation.targets} for validation")
    torch_device = resolve_device(device)
    rng = torch.Generator().manual_seed(config.seed)
    net.to(torch_device)
    bias = nn.Parameter(torch.zeros((), device=torch_device))  # the listen term's offset: trained, not part of the network
    optimizer = torch.optim.AdamW([*net.parameters(), bias], lr=config.lr, weight_decay=config.weight_decay)
    batch = min(config.batch_size, len(train))
    n_batches = max(math.ceil(len(train) / batch), 1)

    def train_epoch(bar: tqdm) -> float:
        order = torch.randperm(len(train), generator=rng).numpy()
        total, counted = 0.0, 0
        for step in range(n_batches):
            index = order[step * batch : (step + 1) * batch]
            if not train.weights[index].any():
                bar.update(1)
                continue
            negatives = draw_negatives(config, n_tracks, rng, torch_device)
            loss = batch_loss(net, _tensors(train, index, torch_device), config, negatives, bias)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            counted += 1
            bar.update(1)
        return total / max(counted, 1)

    def validate() -> dict[str, float]:
        net.eval()
        fixed = torch.Generator().manual_seed(config.seed + 1)
        total, weight = 0.0, 0.0
        with torch.no_grad():
            for start in range(0, len(validation), batch):
                index = np.arange(start, min(start + batch, len(validation)))
                count = float(validation.weights[index].sum())
                negatives = draw_negatives(config, n_tracks, fixed, torch_device)
                if count:
                    total += float(batch_loss(net, _tensors(validation, index, torch_device), config, negatives)) * count
                    weight += count
        return {"val_loss": total / weight}

    stopping = EarlyStopping("val_loss", "min", patience=config.early_stopping_patience, min_delta=config.early_stopping_min_delta)
    fitted = fit_epochs(
        net, train_epoch, validate, stopping, epochs=config.epochs, steps=n_batches, name=name, device=torch_device,
        optimizer=optimizer, progress=progress, on_epoch=on_epoch,
    )
    net.eval()
    return to_numpy(net), fitted.history


def build_and_train(
    build: Callable[[], SequenceNet], name: str, n_tracks: int, train: Sequences, validation: Sequences, config: SequentialConfig,
    device: str = "cpu", progress: bool = False,
) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    """Seed torch, build the network with `config.threads` CPU threads and train it (same seed, same weights)."""
    with cpu_threads(config.threads):
        generator(config.seed)
        return train_sequential(build(), name, n_tracks, train, validation, config, device, progress)
