"""The seed of a request, shared by the service and by `sim.run`'s in-process client.

A recommender that draws at random (`random`, tie-breaks, fallbacks) draws from `Request.seed`.
When the client sends the simulated time, the seed is a pure function of (service seed, session,
ts), so a seeded simulation gets the same answers from the service and from `local:` runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import mmh3
import numpy as np
from mmh3 import hash64

SEED_MASK = 2**63 - 1  # request seeds are non-negative int64


def request_seed(service_seed: int, session: int | None, ts: int | None) -> int:
    """MurmurHash3 of "service_seed:session:ts" (ts in epoch ms); the server's clock when ts is None."""
    if ts is None:
        return time.time_ns() & SEED_MASK
    return mmh3.hash64(f"{service_seed}:{session}:{ts}", signed=False)[0] & SEED_MASK


def request_seeds(service_seed: int, sessions: Sequence[int | None], ts: Sequence[int | None]) -> np.ndarray:
    """`request_seed` of many requests, as uint64."""
    seeds = [
        time.time_ns() & SEED_MASK if t is None else hash64(f"{service_seed}:{session}:{t}", signed=False)[0] & SEED_MASK
        for session, t in zip(sessions, ts, strict=True)
    ]
    return np.array(seeds, dtype=np.uint64).reshape(len(seeds))
