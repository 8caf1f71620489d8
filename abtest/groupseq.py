"""Group-sequential boundaries for planned looks: Lan-DeMets alpha spending.

An experiment looked at K planned times (once a day, say) may stop at look k when the
standardised statistic |Z_k| crosses a boundary c_k. The boundaries are chosen so that, with no
effect, the probability of crossing at look k or earlier is exactly what an alpha-spending
function allots to the information seen so far, alpha(t_k) with t_k = I_k / I_K (Lan & DeMets
1983). Two spending functions, each spending alpha/2 on either side (symmetric two-sided
tests at total level alpha, as ldbounds and gsDesign's `sfLDOF`/`sfLDPocock` do):

* O'Brien-Fleming type: alpha/2 spent by t is 2 - 2 Phi(z_{1 - alpha/4} / sqrt(t)): almost
  nothing is spent early, so the last boundary stays close to the fixed-horizon 1.96.
* Pocock type: alpha/2 spent by t is (alpha/2) log(1 + (e - 1) t): spending evenly, nearly
  constant boundaries.

Under no effect, Z_k sqrt(I_k) is a Gaussian random walk with independent increments of
variance I_k - I_{k-1} (the canonical joint distribution, Jennison & Turnbull 2000, ch. 3). The
probability of crossing at each look is computed by recursive numerical integration of the
sub-density of the walk on the continuation region (Armitage, McPherson & Rowe 1969; the grid
of Jennison & Turnbull 2000, section 19.2), and each c_k is found by a root search so that the
crossing probability at look k equals alpha(t_k) - alpha(t_{k-1}).

The same machinery with constant boundaries (Pocock 1977) or boundaries C sqrt(K / k)
(O'Brien & Fleming 1979) gives the classical tests of Jennison & Turnbull's Tables 2.1 and 2.3.

References:
    K. K. G. Lan, D. L. DeMets (1983). Discrete sequential boundaries for clinical trials.
    Biometrika 70, 659-663. https://doi.org/10.1093/biomet/70.3.659

    P. Armitage, C. K. McPherson, B. C. Rowe (1969). Repeated significance tests on
    accumulating data. JRSS A 132, 235-244. https://doi.org/10.2307/2343787

    D. M. Reboussin, D. L. DeMets, K. Kim, K. K. G. Lan (2000). Computations for group
    sequential boundaries using the Lan-DeMets spending function method. Controlled Clinical
    Trials 21, 190-207 (the ldbounds program). https://doi.org/10.1016/S0197-2456(00)00057-X

    C. Jennison, B. W. Turnbull (2000). Group Sequential Methods with Applications to Clinical
    Trials. Chapman & Hall/CRC.

>>> [round(float(c), 3) for c in spending_boundaries([1, 2, 3, 4, 5], 0.05, "obf")]
[4.877, 3.357, 2.68, 2.29, 2.031]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

SPENDING = ("obf", "pocock")
_GRID = 401  # points of the integration grid per look (Simpson's rule, odd)
_SPAN = 8.0  # the grid reaches this many standard deviations of the walk beyond the boundary


def spending(kind: str, t: float | np.ndarray, alpha: float) -> np.ndarray:
    """The two-sided alpha spent by information fraction `t` (0 < t <= 1): twice a Lan-DeMets function at alpha/2.

    Args:
        kind: 'obf' (O'Brien-Fleming type) or 'pocock' (Pocock type).
        t: Information fraction(s).
        alpha: Total two-sided level, spent entirely at t = 1.
    """
    t = np.asarray(t, dtype=float)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha == {alpha}, must be in (0, 1)")
    if np.any(t <= 0) or np.any(t > 1):
        raise ValueError(f"information fractions {t.tolist()} must lie in (0, 1]")
    if kind == "obf":
        return 4.0 * ndtr(-ndtri(1.0 - alpha / 4.0) / np.sqrt(t))  # 2 (2 - 2 Phi(x)), exact in the far tail
    if kind == "pocock":
        return alpha * np.log1p((math.e - 1.0) * t)
    raise ValueError(f"spending function {kind!r} unknown; choose from {', '.join(SPENDING)}")


@dataclass(frozen=True)
class _Walk:
    """The sub-density of the walk S_k = Z_k sqrt(I_k) on the continuation region after look k."""

    grid: np.ndarray
    density: np.ndarray
    weights: np.ndarray


def _simpson_weights(n: int, step: float) -> np.ndarray:
    weights = np.ones(n)
    weights[1:-1:2] = 4.0
    weights[2:-1:2] = 2.0
    return weights * step / 3.0


def _normal_pdf(x: np.ndarray, sd: float) -> np.ndarray:
    return np.exp(-0.5 * (x / sd) ** 2) / (sd * math.sqrt(2.0 * math.pi))


def _cross(walk: _Walk | None, info: float, step_var: float, c: float) -> float:
    """P(the walk has not stopped before this look and |Z| >= c at it)."""
    b = c * math.sqrt(info)
    sd = math.sqrt(step_var)
    if walk is None:
        return float(2.0 * ndtr(-c))
    # P(S_k > b | S_{k-1} = s) = Phi((s - b) / sd), symmetric for S_k < -b.
    upper = ndtr((walk.grid - b) / sd)
    lower = ndtr((-b - walk.grid) / sd)
    return float(np.sum(walk.weights * walk.density * (upper + lower)))


def _advance(walk: _Walk | None, info: float, step_var: float, c: float) -> _Walk:
    """The sub-density on (-b, b) at this look, b = c sqrt(info), given that of the look before."""
    b = c * math.sqrt(info)
    grid = np.linspace(-b, b, _GRID)
    weights = _simpson_weights(_GRID, grid[1] - grid[0])
    if walk is None:
        density = _normal_pdf(grid, math.sqrt(step_var))
    else:
        kernel = _normal_pdf(grid[:, None] - walk.grid[None, :], math.sqrt(step_var))
        density = kernel @ (walk.weights * walk.density)
    return _Walk(grid, density, weights)


def _check_information(information: ArrayLike) -> np.ndarray:
    info = np.asarray(information, dtype=float)
    if info.ndim != 1 or len(info) == 0:
        raise ValueError("information must be a non-empty sequence of increasing positive numbers")
    if info[0] <= 0 or np.any(np.diff(info) <= 0):
        raise ValueError(f"information {info.tolist()} must be positive and strictly increasing")
    return info


def crossing_probabilities(boundaries: ArrayLike, information: ArrayLike) -> np.ndarray:
    """Under no effect, the probability of first crossing |Z_k| >= c_k at each look k.

    Args:
        boundaries: Two-sided z boundaries c_k, one per look.
        information: Information (or any multiple of it, e.g. users) at each look, increasing.
    """
    info = _check_information(information)
    bounds = np.asarray(boundaries, dtype=float)
    if bounds.shape != info.shape:
        raise ValueError(f"{bounds.size} boundaries for {len(info)} looks")
    out, walk, before = [], None, 0.0
    for c, level in zip(bounds.tolist(), info.tolist(), strict=True):
        out.append(_cross(walk, level, level - before, float(c)))
        walk, before = _advance(walk, level, level - before, float(c)), level
    return np.array(out)


def _solve(walk: _Walk | None, info: float, step_var: float, target: float) -> float:
    """The boundary c whose crossing probability at this look is `target`."""
    return float(brentq(lambda c: _cross(walk, info, step_var, c) - target, 0.0, 40.0, xtol=1e-10))


def spending_boundaries(information: ArrayLike, alpha: float, kind: str = "obf") -> np.ndarray:
    """Two-sided z boundaries c_k of a Lan-DeMets spending test at the looks given.

    The information fraction of look k is information[k] / information[-1] (the last look is
    the planned end). At each look c_k solves P(first crossing at k) = alpha(t_k) - alpha(t_{k-1}).

    Args:
        information: Information at each look, increasing (users seen, days, any multiple).
        alpha: Total two-sided level.
        kind: 'obf' or 'pocock' (see `spending`).
    """
    info = _check_information(information)
    spent = spending(kind, info / info[-1], alpha)
    out: list[float] = []
    walk, before, previous = None, 0.0, 0.0
    for level, total in zip(info.tolist(), spent.tolist(), strict=True):
        target = total - previous
        step_var = level - before
        c = math.inf if target <= 0 else _solve(walk, level, step_var, target)
        out.append(c)
        walk = _advance(walk, level, step_var, min(c, 40.0))
        before, previous = level, total
    return np.array(out)


def _constant_family(shape: Callable[[np.ndarray], np.ndarray], looks: int, alpha: float) -> np.ndarray:
    info = np.arange(1, looks + 1, dtype=float)
    scale = shape(info)
    constant = brentq(lambda c: crossing_probabilities(c * scale, info).sum() - alpha, 1.0, 10.0, xtol=1e-10)
    return constant * scale


def pocock_classical(looks: int, alpha: float) -> np.ndarray:
    """Pocock's (1977) constant boundaries for `looks` equally spaced looks at two-sided `alpha`."""
    return _constant_family(np.ones_like, looks, alpha)


def obrien_fleming_classical(looks: int, alpha: float) -> np.ndarray:
    """O'Brien & Fleming's (1979) boundaries C sqrt(K / k) for `looks` equally spaced looks at two-sided `alpha`."""
    return _constant_family(lambda info: np.sqrt(looks / info), looks, alpha)
