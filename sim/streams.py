"""Counter-based random streams: common random numbers per listener, session and step.

A draw is a pure function of (key, counters...): the same listener's session under two
different recommenders sees the same uniforms for its interest, its first track and the
budget coin at every step, so a treatment and its control simulated over the same sessions
differ only by what the recommenders did (common random numbers). The key itself comes from
`np.random.SeedSequence`, so seeds spawn as numpy's do.

Why not one `Generator` per session: creating a `SeedSequence`-seeded generator costs about
10 microseconds, which a vectorised environment stepping a million steps a second cannot pay
for each of its sessions. A counter-based hash is the standard answer (Salmon et al., "Parallel
random numbers: as easy as 1, 2, 3", SC 2011); here the mixer is splitmix64's finaliser.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))
_TO_UNIT = 1.0 / (1 << 53)

# Purposes of draws; part of the simulation's definition (changing one changes every run).
USER = 1  # which listener starts episode e
INTEREST = 2  # which of the listener's interests leads the session
FIRST_TRACK = 3  # which neighbour of the interest is played first
BUDGET = 4  # the budget coin after step t
POPULAR_START = 5  # extension: start from a popular track instead of an interest
POPULAR_TRACK = 6  # extension: which popular track


def _mix(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> _S30)) * _M1
    h = (h ^ (h >> _S27)) * _M2
    return h ^ (h >> _S31)


def key_from_seed(seed: int | np.random.SeedSequence) -> int:
    """A 64-bit stream key derived from a seed through `SeedSequence`."""
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def uniform(key: int, *counters: int | np.ndarray) -> np.ndarray:
    """Uniform draws in [0, 1) for every broadcast combination of `counters`, as float64.

    Counters are non-negative integers (or arrays of them): e.g. (user, session, BUDGET, step).
    """
    h = np.full(np.broadcast_shapes(*(np.shape(c) for c in counters)), np.uint64(key), dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        for counter in counters:
            h = _mix(h ^ (np.asarray(counter).astype(np.uint64) * _GOLDEN + _GOLDEN))
    return (h >> _S11).astype(np.float64) * _TO_UNIT


_MASK = (1 << 64) - 1
_GOLDEN_INT, _M1_INT, _M2_INT = int(_GOLDEN), int(_M1), int(_M2)


def uniform_scalar(key: int, *counters: int) -> float:
    """`uniform` for plain integers, bit for bit, without numpy's per-call overhead."""
    h = key
    for counter in counters:
        h ^= (counter * _GOLDEN_INT + _GOLDEN_INT) & _MASK
        h = ((h ^ (h >> 30)) * _M1_INT) & _MASK
        h = ((h ^ (h >> 27)) * _M2_INT) & _MASK
        h ^= h >> 31
    return (h >> 11) * _TO_UNIT


def choice_index(u: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """Map uniforms `u` to indices in [0, n), elementwise."""
    return np.minimum((u * n).astype(np.int64), np.asarray(n) - 1)
