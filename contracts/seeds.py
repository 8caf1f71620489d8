"""The seed of a request, shared by the service and by `sim.run`'s in-process client.

A recommender that draws at random (`random`, tie-breaks, fallbacks) draws from `Request.seed`.
When the client sends the simulated time, the seed is a pure function of (service seed, session,
ts), so a seeded simulation gets the same answers from the service and from `local:` runs.
"""

from __future__ import annotations

import time

import mmh3

SEED_MASK = 2**63 - 1  # request seeds are non-negative int64


def request_seed(service_seed: int, session: int | None, ts: int | None) -> int:
    """MurmurHash3 of "service_seed:session:ts" (ts in epoch ms); the server's clock when ts is None."""
    if ts is None:
        return time.time_ns() & SEED_MASK
    return mmh3.hash64(f"{service_seed}:{session}:{ts}", signed=False)[0] & SEED_MASK
