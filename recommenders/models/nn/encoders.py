"""The torch networks of the content models: a frame-sequence encoder and the heads on it.

Shapes: B = batch, L = padded sequence length, F = frame dimension, d = model width.
A padding mask is True where a position is padding (PyTorch's `src_key_padding_mask`
convention); padded positions never influence a valid one, so padding a batch further
leaves every output unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from recommenders.models.content_config import EncoderConfig


def padding_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) bool, True at positions >= the row's length."""
    return torch.arange(width, device=lengths.device)[None, :] >= lengths[:, None]


class AttentionPooling(nn.Module):
    """Softmax-weighted average over the valid positions: (B, L, d) -> (B, d).

    A learned linear score per position; padded positions get weight exactly 0.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.score = nn.Linear(d_model, 1)
        nn.init.zeros_(self.score.weight)  # start as a plain average over the valid frames
        nn.init.zeros_(self.score.bias)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(hidden).squeeze(-1).float().masked_fill(mask, float("-inf"))
        weights = torch.softmax(logits, dim=1).to(hidden.dtype)
        hidden = hidden.masked_fill(mask[..., None], 0.0)
        return torch.einsum("bl,bld->bd", weights, hidden)


class FrameEncoder(nn.Module):
    """Transformer encoder over a track's frames, attention-pooled to one vector.

    Input (B, L, F) frames and (B,) lengths (each >= 1); output (B, d_model). The pooling
    starts as a plain average of the residual stream (a mean-pooling model, the natural
    baseline for noisy frames) and learns to weigh frames from there. There is no final
    LayerNorm: normalising the pooled vector throws away the scale of the averaged signal,
    and training then stalls near the tag-frequency baseline. No positional
    encoding: the world's frames carry no order signal, and the roll and reversal
    augmentations would scramble it anyway.
    """

    def __init__(self, frame_dim: int, config: EncoderConfig) -> None:
        super().__init__()
        self.project = nn.Linear(frame_dim, config.d_model)
        layer = nn.TransformerEncoderLayer(
            config.d_model,
            config.heads,
            config.feedforward,
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.pool = AttentionPooling(config.d_model)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = padding_mask(lengths, frames.shape[1])
        hidden = self.transformer(self.project(frames), src_key_padding_mask=mask)
        return self.pool(hidden, mask)


class TagNet(nn.Module):
    """Frames -> tag logits: `FrameEncoder`, then a feed-forward head. Output (B, n_tags)."""

    def __init__(self, frame_dim: int, n_tags: int, encoder: EncoderConfig, hidden: int, dropout: float) -> None:
        super().__init__()
        self.encoder = FrameEncoder(frame_dim, encoder)
        self.head = nn.Sequential(
            nn.Linear(encoder.d_model, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_tags),
        )

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(frames, lengths))


def masked_mean(frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, L, F) frames, (B,) lengths -> (B, F): the average of each row's valid frames."""
    mask = padding_mask(lengths, frames.shape[1])
    total = frames.masked_fill(mask[..., None], 0.0).float().sum(dim=1)
    return total / lengths[:, None].clamp(min=1).to(total.dtype)


class TwoTower(nn.Module):
    """The contrastive pair: a content tower over frames and a behaviour tower over a
    track's behaviour vector, both ending on the unit sphere of dimension `embedding`.

    The content tower is a learned linear map of the track's mean frame plus a transformer
    residual (`FrameEncoder` and a linear head) whose head starts at zero: training begins
    from a linear model of the mean frame, the strong baseline for noisy frames, and the
    transformer adds only what the data pays for. When `embedding` equals the frame dimension
    the linear map starts as the identity, so the untrained tower ranks tracks exactly as the
    cosine of their mean frames does (otherwise it starts as a random orthogonal projection).

    `content(frames, lengths)` -> (B, embedding); `behaviour(features)` -> (B, embedding);
    `logit_scale` is the learned inverse temperature of InfoNCE (CLIP's parametrisation).
    """

    def __init__(self, frame_dim: int, behaviour_dim: int, encoder: EncoderConfig, embedding: int, hidden: int, temperature: float) -> None:
        super().__init__()
        self.linear = nn.Linear(frame_dim, embedding)
        nn.init.orthogonal_(self.linear.weight)  # the identity when embedding == frame_dim: cosines of mean frames
        if embedding == frame_dim:
            nn.init.eye_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.encoder = FrameEncoder(frame_dim, encoder)
        self.content_head = nn.Linear(encoder.d_model, embedding)
        nn.init.zeros_(self.content_head.weight)  # the residual starts at exactly zero
        nn.init.zeros_(self.content_head.bias)
        self.behaviour_net = nn.Sequential(
            nn.Linear(behaviour_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, embedding),
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(-torch.log(torch.tensor(temperature)))))

    def content(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        linear = self.linear(masked_mean(frames, lengths)).float()
        residual = self.content_head(self.encoder(frames, lengths)).float()
        return functional.normalize(linear + residual, dim=-1)

    def behaviour(self, features: torch.Tensor) -> torch.Tensor:
        return functional.normalize(self.behaviour_net(features).float(), dim=-1)


def info_nce(content: torch.Tensor, behaviour: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with in-batch negatives: row i of each side is the positive of row i
    of the other, every other row a negative. Inputs (B, e) unit vectors; output a scalar."""
    logits = logit_scale.clamp(max=4.6052).exp() * content @ behaviour.T  # scale at most 100
    target = torch.arange(len(content), device=content.device)
    return 0.5 * (functional.cross_entropy(logits, target) + functional.cross_entropy(logits.T, target))
