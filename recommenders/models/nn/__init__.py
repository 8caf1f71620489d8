"""Torch networks and training loops of the learned models; only training imports this.

Submodules: `training` (seeding, devices, plateau schedule, progress), `dssm` (the two-tower
network and its training loop), `bpr` (the BPR network and its training loop). Serving never
needs torch: trained weights are exported as numpy arrays.
"""

from __future__ import annotations

from types import ModuleType

INSTALL_HINT = "training needs torch: pip install 'botify-lab[ml]' (or ./scripts/setup.sh)"


class DependencyNotInstalled(ImportError):
    """torch is missing; the message says how to install it."""


class TrainingError(ValueError):
    """Training cannot start or go on: too little data, an unavailable device; the message says which."""


def require_torch() -> ModuleType:
    """The `torch` module, or `DependencyNotInstalled` with a one-line install hint."""
    try:
        import torch
    except ImportError as error:
        raise DependencyNotInstalled(INSTALL_HINT) from error
    return torch
