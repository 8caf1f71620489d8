"""Pieces every training loop shares: seeding, the device, the plateau schedule, progress, export."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from recommenders.models.nn import TrainingError

logger = logging.getLogger(__name__)


def generator(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weight initialisation) and return a CPU generator for sampling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """`torch.device(name)`, or `TrainingError` when CUDA was asked for and is not available."""
    if name not in ("cpu", "cuda"):
        raise TrainingError(f"device == {name!r}, must be 'cpu' or 'cuda'")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device 'cuda' is not available (torch {torch.__version__}); train with --device cpu")
    return torch.device(name)


@dataclass
class Plateau:
    """Learning-rate reduction and early stopping on a validation loss, as in the DSSM write-up.

    After each epoch, `step(loss)` compares the loss with the best so far: an improvement
    smaller than `reduce_min_delta` for `reduce_patience` epochs multiplies the learning rate
    by `factor`; one smaller than `stop_min_delta` for `stop_patience` epochs stops training.
    """

    reduce_min_delta: float
    factor: float
    reduce_patience: int
    stop_min_delta: float
    stop_patience: int
    best: float = float("inf")
    _reduce_wait: int = field(default=0, repr=False)
    _stop_wait: int = field(default=0, repr=False)

    def step(self, loss: float, optimizer: torch.optim.Optimizer) -> tuple[bool, bool]:
        """(improved on the best, should stop) after an epoch with validation `loss`."""
        improvement = self.best - loss
        improved = loss < self.best
        self._reduce_wait = 0 if improvement >= self.reduce_min_delta else self._reduce_wait + 1
        self._stop_wait = 0 if improvement >= self.stop_min_delta else self._stop_wait + 1
        if improved:
            self.best = loss
        if self._reduce_wait >= self.reduce_patience:
            for group in optimizer.param_groups:
                group["lr"] *= self.factor
            self._reduce_wait = 0
        return improved, self._stop_wait >= self.stop_patience


def epoch_bar(total: int, description: str, enabled: bool) -> tqdm:
    """A progress bar over one epoch's batches."""
    return tqdm(total=total, desc=description, unit="batch", disable=not enabled, leave=True, dynamic_ncols=True)


def to_numpy(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """The module's parameters as float32 numpy arrays, keyed like its `state_dict`."""
    return {name: tensor.detach().cpu().numpy().astype(np.float32) for name, tensor in module.state_dict().items()}


def copy_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the module's `state_dict` (to restore the best epoch)."""
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
