"""Request latency quantiles per recommender and time bin from log-bucket histograms, within 0.5%.

Each latency x > 0 is counted in bucket b = ceil(log_g(x)), g = (1 + a) / (1 - a), and a quantile
is read off the counts: the order statistics that `quantile_cont` interpolates between are found
by rank, exactly, and each is taken as its bucket's midpoint 2 g^b / (g + 1), which is within a
relative `a` of every value of the bucket; so the interpolated quantile is within a relative `a`
(`RELATIVE_ERROR`) of the exact one (the buckets of DDSketch: Masson, Rim and Lee, "DDSketch: a
fast and fully-mergeable quantile sketch with relative-error guarantees", VLDB 2019,
https://arxiv.org/abs/1908.10693). Counts add up, so the histograms of a log's segments, kept per
minute, give the chart of any bin width without reading the events again (`increments`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# The buckets (and the SQL that counts events into them) are declared with the log's other sums:
# the event-log writer keeps each sealed segment's histograms in its summary.
from contracts.eventlog.groups import GAMMA, RELATIVE_ERROR, ZERO_BUCKET, ZERO_S, bucket_sql, histogram_sql

__all__ = ["GAMMA", "QUANTILES", "RELATIVE_ERROR", "ZERO_BUCKET", "ZERO_S", "bucket_sql", "bucket_value", "histogram_sql", "latency_rows", "quantiles"]

QUANTILES = (0.5, 0.99)


def bucket_value(bucket: int) -> float:
    """The value in seconds that stands for every latency of `bucket`: its midpoint in relative terms."""
    if bucket == ZERO_BUCKET:
        return 0.0
    return 2 * GAMMA**bucket / (GAMMA + 1)


def quantiles(buckets: Sequence[int], counts: Sequence[int], qs: Sequence[float] = QUANTILES) -> list[float | None]:
    """The quantiles `qs` of the latencies counted in `buckets` (`counts` of each, any order), as
    `quantile_cont` interpolates them (between the order statistics at rank (n - 1) q), each within a
    relative `RELATIVE_ERROR` of the exact quantile; None for each when nothing was counted."""
    order = np.argsort(np.asarray(buckets, dtype=np.int64), kind="stable")
    values = np.asarray([bucket_value(int(b)) for b in np.asarray(buckets)[order]], dtype=float)
    cumulative = np.cumsum(np.asarray(counts, dtype=np.int64)[order])
    n = int(cumulative[-1]) if len(cumulative) else 0
    if n == 0:
        return [None for _ in qs]
    out: list[float | None] = []
    for q in qs:
        rank = (n - 1) * q
        lo, hi = math.floor(rank), math.ceil(rank)
        low, high = (values[int(np.searchsorted(cumulative, i, side="right"))] for i in (lo, hi))
        out.append(float(low + (high - low) * (rank - lo)))
    return out


def latency_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, Any, int, list[float | None]]]:
    """`histogram_sql`'s rows (recommender, bin, bucket, requests) as (recommender, bin, requests,
    [p50, p99] in seconds) per recommender and bin, ordered by both; requests count NULL latencies too."""
    groups: dict[tuple[Any, Any], tuple[list[int], list[int], list[int]]] = {}
    for recommender, start, bucket, requests in rows:
        buckets, counts, total = groups.setdefault((recommender, start), ([], [], [0]))
        total[0] += int(requests)
        if bucket is not None:
            buckets.append(int(bucket))
            counts.append(int(requests))
    ordered = sorted(groups.items(), key=lambda item: (item[0][0] is None, item[0][0] or "", item[0][1]))
    return [(rec, start, total[0], quantiles(buckets, counts)) for (rec, start), (buckets, counts, total) in ordered]
