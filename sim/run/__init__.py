"""`python -m sim.run`: turns the world and the listener model into traffic.

Submodules: `timeline` (SimPy: arrivals, sessions, batching, returns), `clients` (botify over
HTTP, in-process recommenders, dummy), `shards` (multi-process runs behind an executor
interface), `summary` (the end-of-run table), `console` (pick tracks by hand), `locallog`
(the event log of in-process runs).
"""
