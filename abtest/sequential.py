"""Always-valid inference for an experiment looked at again and again: asymptotic confidence sequences.

A fixed-horizon interval read every day fails more often than its alpha (each look is another
chance of a false alarm). A confidence sequence holds at every look at once: the probability
that it ever excludes the true effect is at most alpha, so the experiment can be stopped the
first day it excludes zero. The asymptotic confidence sequence of Waudby-Smith, Arbour,
Sinha, Kennedy and Ramdas ("Time-uniform central limit theory and asymptotic confidence
sequences", Annals of Statistics 2024, https://arxiv.org/abs/2103.06476, Theorem 2.2, the
normal-mixture boundary of Robbins 1970) replaces the fixed-horizon z * se by

    se * sqrt(n) * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha))

for n units observed so far and a mixing parameter rho, chosen so that the sequence is
tightest at a planned `n_opt` units: rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / n_opt
(Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence
sequences", Annals of Statistics 2021, https://arxiv.org/abs/1810.08240, eq. (3.10)). GrowthBook's
sequential test uses the same boundary.

>>> round(float(half_width_factor(1000, 1000, 0.05)), 3)  # vs 1.96 for one fixed-horizon look
3.035
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike


def mixing_rho2(n_opt: float, alpha: float) -> float:
    """rho^2 of the normal mixture that makes the boundary tightest at `n_opt` units (Howard et al. 2021, eq. 3.10)."""
    if n_opt <= 0:
        raise ValueError(f"n_opt == {n_opt}, must be > 0")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha == {alpha}, must be in (0, 1)")
    log_a = -2.0 * math.log(alpha)
    return (log_a + math.log(log_a + 1.0)) / n_opt


def half_width_factor(n: ArrayLike, n_opt: float, alpha: float) -> np.ndarray:
    """The multiple of the fixed-horizon standard error that the confidence sequence spans at `n` units.

    The fixed-horizon interval's factor is the normal quantile (1.96 at alpha 0.05); this one is
    larger and grows slowly with n: the price of being valid at every look.
    """
    n = np.asarray(n, dtype=float)
    rho2 = mixing_rho2(n_opt, alpha)
    return np.sqrt(n) * np.sqrt(2.0 * (n * rho2 + 1.0) / (n**2 * rho2) * np.log(np.sqrt(n * rho2 + 1.0) / alpha))


def confidence_sequence(estimate: ArrayLike, se: ArrayLike, n: ArrayLike, n_opt: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the asymptotic confidence sequence at the looks given (vectorised)."""
    width = np.asarray(se, dtype=float) * half_width_factor(n, n_opt, alpha)
    estimate = np.asarray(estimate, dtype=float)
    return estimate - width, estimate + width
