"""The one training loop of the torch models, and the pieces it is made of.

`fit_epochs` runs the epochs of every torch model (DSSM, BPR, the tag model, the content
model): the model supplies one epoch's training pass and a validation; the loop times the
epoch, keeps a per-epoch history, drives the progress bar, applies `EarlyStopping` (which may
also reduce the learning rate on a plateau) and restores the weights of the best epoch. Also
here: seeding, the device, the CPU thread count, and export of the weights as numpy arrays.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

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


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` torch CPU threads, then restore the previous count.

    Training fixes the count (the config's `threads`) rather than taking torch's default, the
    machine's core count: parallel CPU kernels split their sums by thread, so the same log,
    config and seed give other weights on a machine with another number of cores, and with
    more than one thread not always the same weights twice.
    """
    if threads < 1:
        raise TrainingError(f"threads == {threads}, must be >= 1")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class EarlyStopping:
    """When to keep an epoch's weights, lower the learning rate and stop, from a validation score.

    After each epoch, `step(score)` compares the score with the best so far (lower is better in
    mode "min", higher in mode "max"). A strictly better score is an improvement: its weights
    are kept. An improvement of at least `min_delta` is progress; `patience` epochs in a row
    without progress stop training (None: never stop early). Likewise `reduce_patience` epochs
    without an improvement of at least `reduce_min_delta` multiply the learning rate of every
    parameter group by `factor` (None: never), as Keras' `ReduceLROnPlateau` does.

    Attributes:
        monitor: the history key of the score, e.g. "val_loss".
        mode: "min" for a loss, "max" for a metric such as MRR.
        patience: epochs without progress before training stops, or None.
        min_delta: the least improvement that counts as progress towards not stopping.
        reduce_patience: epochs without progress of `reduce_min_delta` before the learning rate drops, or None.
        reduce_min_delta: the least improvement that counts as progress towards not reducing.
        factor: what the learning rate is multiplied by on a plateau.
        best: the best score so far (starts at the worst possible value).
    """

    monitor: str
    mode: Literal["min", "max"]
    patience: int | None = None
    min_delta: float = 0.0
    reduce_patience: int | None = None
    reduce_min_delta: float = 0.0
    factor: float = 0.1
    best: float = field(default=math.nan)
    _stop_wait: int = field(default=0, repr=False)
    _reduce_wait: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode == {self.mode!r}, must be 'min' or 'max'")
        if math.isnan(self.best):
            self.best = math.inf if self.mode == "min" else -math.inf

    def gain(self, score: float) -> float:
        """How much better `score` is than the best so far (negative when worse, NaN for a NaN score)."""
        return self.best - score if self.mode == "min" else score - self.best

    def step(self, score: float, optimizer: torch.optim.Optimizer | None = None) -> tuple[bool, bool]:
        """(improved on the best, should stop) after an epoch with validation `score`."""
        gain = self.gain(score)
        improved = gain > 0
        self._stop_wait = 0 if improved and gain >= self.min_delta else self._stop_wait + 1
        self._reduce_wait = 0 if improved and gain >= self.reduce_min_delta else self._reduce_wait + 1
        if improved:
            self.best = score
        if self.reduce_patience is not None and self._reduce_wait >= self.reduce_patience:
            if optimizer is not None:
                for group in optimizer.param_groups:
                    group["lr"] *= self.factor
            self._reduce_wait = 0
        return improved, self.patience is not None and self._stop_wait >= self.patience


@dataclass
class Fitted:
    """What `fit_epochs` leaves besides the network (which holds the kept weights).

    Attributes:
        history: one record per trained epoch: "epoch", "train_loss", the validation scores,
            "lr" (the learning rate the epoch ended with, before any plateau reduction) and
            "seconds" (training pass plus validation).
        best_epoch: the epoch whose weights were kept (0: the untrained network).
        best: the validation scores of that epoch (empty without validation).
    """

    history: list[dict[str, float]]
    best_epoch: int
    best: dict[str, float]


def fit_epochs(
    net: torch.nn.Module,
    train_epoch: Callable[[tqdm], float],
    validate: Callable[[], dict[str, float]] | None,
    stopping: EarlyStopping,
    *,
    epochs: int,
    steps: int,
    name: str,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = False,
    validate_untrained: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> Fitted:
    """Train `net` for up to `epochs` epochs and leave it with the weights of the best one.

    Each epoch puts `net` in training mode and calls `train_epoch(bar)`, which runs one pass
    over the training data (advancing `bar` by one per batch, `steps` batches in all) and
    returns the mean training loss; then `validate()` returns the validation scores, among
    them `stopping.monitor`, and `stopping` decides whether the weights are kept and whether
    training stops. Without `validate` the last epoch's weights are kept and training runs
    every epoch. With `validate_untrained`, the untrained network is scored first and is the
    best to beat (epoch 0). `on_epoch` receives each epoch's history record as it is written.

    Args:
        net: the network; it ends with the kept weights.
        train_epoch: one training pass; returns the epoch's mean training loss.
        validate: the validation scores of the network as it stands, or None.
        stopping: the early-stopping and plateau rule over `stopping.monitor`.
        epochs: the most epochs to train.
        steps: batches per epoch, for the progress bar.
        name: the model's name, for the progress bar and the log.
        device: where `net` trains (CUDA work is waited for before an epoch is timed).
        optimizer: whose learning rate the history records and a plateau lowers.
        progress: show a progress bar per epoch.
        validate_untrained: score the untrained network as epoch 0.
        on_epoch: called with each epoch's history record.

    Returns:
        The history, the kept epoch and its validation scores.
    """
    best_state = copy_state(net)
    best_epoch, best = 0, {}
    if validate is not None and validate_untrained:
        best = validate()
        stopping.step(best[stopping.monitor])
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        net.train()
        with tqdm(total=steps, desc=f"{name} epoch {epoch}/{epochs}", unit="batch", disable=not progress, leave=True, dynamic_ncols=True) as bar:
            train_loss = train_epoch(bar)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            scores = validate() if validate is not None else {stopping.monitor: math.nan}
            bar.set_postfix(loss=f"{train_loss:.4f}", **{key: f"{value:.4f}" for key, value in scores.items()})
        lr = optimizer.param_groups[0]["lr"] if optimizer is not None else math.nan
        if validate is None:
            improved, stop = True, False
        else:
            improved, stop = stopping.step(scores[stopping.monitor], optimizer)
        if improved:
            best_state, best_epoch, best = copy_state(net), epoch, scores if validate is not None else {}
        record = {"epoch": epoch, "train_loss": train_loss, **scores, "lr": lr, "seconds": time.perf_counter() - started}
        history.append(record)
        logger.info(
            "%s epoch %d: train loss %.4f, %s, lr %.2g, %.1f s",
            name, epoch, train_loss, ", ".join(f"{key} {value:.4f}" for key, value in scores.items()), lr, record["seconds"],
        )
        if on_epoch is not None:
            on_epoch(record)
        if stop:
            logger.info("%s: no validation progress in %d epochs, stopping at epoch %d", name, stopping.patience, epoch)
            break
    net.load_state_dict(best_state)
    return Fitted(history, best_epoch, best)


def to_numpy(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """The module's parameters as float32 numpy arrays, keyed like its `state_dict`."""
    return {name: tensor.detach().cpu().numpy().astype(np.float32) for name, tensor in module.state_dict().items()}


def copy_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the module's `state_dict` (to restore the best epoch)."""
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
