"""Training-time augmentations of padded frame batches (from the tag write-up).

Every random choice is drawn from a numpy `Generator`, so a seed gives the same batches on
any device. Each function takes (B, L, F) frames and (B,) lengths and touches only the
valid positions of a row; padding stays zero.
"""

from __future__ import annotations

import numpy as np
import torch

from recommenders.models.content_config import AugmentConfig


def permute_frames(frames: torch.Tensor, lengths: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """Reversal and roll within each row's valid frames, as one gather."""
    batch, width = frames.shape[:2]
    position = np.broadcast_to(np.arange(width), (batch, width))
    valid = position < lengths[:, None]
    safe = np.maximum(lengths, 1)[:, None]
    source = np.where((rng.random(batch) < config.reverse)[:, None] & valid, safe - 1 - position, position)
    shift = np.where(rng.random(batch) < config.roll, (rng.random(batch) * lengths).astype(np.int64), 0)
    source = np.where(valid, (source + shift[:, None]) % safe, position)
    index = torch.as_tensor(source, device=frames.device)[..., None].expand_as(frames)
    return frames.gather(1, index)


def mask_frames(frames: torch.Tensor, lengths: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """Zero a random `mask_fraction` of the valid frames in a `mask` share of rows."""
    batch, width = frames.shape[:2]
    rows = rng.random(batch) < config.mask
    drop = (rng.random((batch, width)) < config.mask_fraction) & rows[:, None] & (np.arange(width) < lengths[:, None])
    return frames.masked_fill(torch.as_tensor(drop, device=frames.device)[..., None], 0.0)


def mixup(
    frames: torch.Tensor, targets: torch.Tensor, lengths: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend a `mixup` share of rows with a random partner row: frames and targets alike.

    The row keeps its own length and the larger weight; the partner's frames are repeated
    cyclically to cover it.
    """
    batch, width = frames.shape[:2]
    chosen = rng.random(batch) < config.mixup
    if not chosen.any():
        return frames, targets
    partner = rng.permutation(batch)
    weight = rng.beta(config.mixup_alpha, config.mixup_alpha, batch)
    weight = np.where(chosen, np.maximum(weight, 1.0 - weight), 1.0)
    position = np.arange(width)[None, :]
    source = position % np.maximum(lengths[partner], 1)[:, None]
    device = frames.device
    partner_frames = frames[torch.as_tensor(partner, device=device)].gather(
        1, torch.as_tensor(source, device=device)[..., None].expand_as(frames)
    )
    valid = torch.as_tensor(position < lengths[:, None], device=device)[..., None]
    w = torch.as_tensor(weight, dtype=frames.dtype, device=device)
    mixed = (w[:, None, None] * frames + (1.0 - w[:, None, None]) * partner_frames) * valid
    mixed_targets = w[:, None].to(targets.dtype) * targets + (1.0 - w[:, None].to(targets.dtype)) * targets[torch.as_tensor(partner, device=device)]
    return mixed, mixed_targets
