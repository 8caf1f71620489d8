"""Plumbing of the frame-model training loops: seeding, mixed precision with gradient
clipping, and batched inference over a `FrameStore` (the device comes from `training.resolve_device`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

from recommenders.models.frame_store import FrameStore


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch (dropout, initialisation) and return the numpy generator for batching."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on the CPU while training, and stop at the end.

    Optimiser moments of rarely seen tags decay into denormals, which slow CPU arithmetic down
    several-fold as training goes on. The flag is the thread's floating-point mode, so it is
    cleared on the way out: code that runs after training computes with denormals again.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on a CUDA device when enabled; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


class Stepper:
    """One optimiser step with loss scaling (CUDA mixed precision) and gradient-norm clipping."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, amp: bool, clip_norm: float) -> None:
        self.model = model
        self.optimizer = optimizer
        self.clip_norm = clip_norm
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")

    def step(self, loss: torch.Tensor) -> bool:
        """Backpropagate `loss` and step; False when the loss scaler skipped the step (inf or NaN
        gradients, as in the first steps of mixed precision), so a schedule should not advance."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        if not self.scaler.is_enabled():
            self.optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale  # the scaler backs off only after a skipped step


def batched_rows(n: int, batch_size: int, lengths: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Row indices 0..n-1 in batches for inference, grouped by length when given (less padding)."""
    order = np.argsort(lengths, kind="stable") if lengths is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


@torch.no_grad()
def encode_store(
    store: FrameStore,
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int,
    amp: bool = False,
) -> np.ndarray:
    """Run `encode(frames, lengths)` over every row of `store` (full sequences, no crop) and
    return the outputs in row order as float32 numpy, shape (len(store), out_dim)."""
    outputs: list[np.ndarray] = []
    rows_seen: list[np.ndarray] = []
    for rows in batched_rows(len(store), batch_size, store.lengths):
        frames, lengths = store.batch(rows)
        with autocast(device, amp):
            out = encode(torch.from_numpy(frames).to(device), torch.from_numpy(lengths).to(device))
        outputs.append(out.float().cpu().numpy())
        rows_seen.append(rows)
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    result = np.empty((len(store), outputs[0].shape[1]), dtype=np.float32)
    result[np.concatenate(rows_seen)] = np.concatenate(outputs)
    return result
