"""Offline ranking metrics: pure functions of (recommendations, ground truth, k).

`recommendations` is one ranked list of track ids per case, best first (a 2-D array or a
sequence of sequences). `truth` is, per case, the set of relevant track ids: an iterable of
ids, or a single id. Every metric returns the mean over cases; cases must have at least one
relevant id. Ranks are 1-based.

References: Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques" (2002)
for NDCG; Voorhees, "The TREC-8 question answering track report" (1999) for MRR.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

Truth = Sequence[Iterable[int] | int] | np.ndarray


def _relevance(recommendations: Sequence[Sequence[int]] | np.ndarray, truth: Truth, k: int | None) -> tuple[list[np.ndarray], np.ndarray]:
    """Per case: a 0/1 array over the first k recommendations, and the number of relevant ids."""
    if k is not None and k <= 0:
        raise ValueError(f"k == {k}, must be > 0")
    if len(recommendations) != len(truth):
        raise ValueError(f"{len(recommendations)} recommendation lists but {len(truth)} ground-truth entries")
    if len(truth) == 0:
        raise ValueError("no cases to evaluate")
    hits: list[np.ndarray] = []
    sizes = np.empty(len(truth), dtype=np.int64)
    for index, (ranked, relevant) in enumerate(zip(recommendations, truth, strict=True)):
        relevant_set = {int(relevant)} if np.isscalar(relevant) else {int(item) for item in relevant}  # type: ignore[arg-type]
        if not relevant_set:
            raise ValueError(f"case {index} has no relevant item")
        top = np.asarray(ranked)[:k] if k is not None else np.asarray(ranked)
        hits.append(np.fromiter((int(item) in relevant_set for item in top), dtype=np.float64, count=len(top)))
        sizes[index] = len(relevant_set)
    return hits, sizes


def hit_rate(recommendations: Sequence[Sequence[int]] | np.ndarray, truth: Truth, k: int) -> float:
    """Hit@k: the share of cases with a relevant id among the first k.

    Hit@k = (1/|U|) * sum_u 1[ rec_u[:k] ∩ T_u ≠ ∅ ]
    """
    hits, _ = _relevance(recommendations, truth, k)
    return float(np.mean([row.any() for row in hits]))


def mrr(recommendations: Sequence[Sequence[int]] | np.ndarray, truth: Truth, k: int | None = None) -> float:
    """Mean reciprocal rank of the first relevant id (0 for a case without one in the first k).

    MRR@k = (1/|U|) * sum_u 1 / rank_u, where rank_u is the position of the first id of T_u
    in rec_u[:k] (the whole list when k is None), and 1/rank_u = 0 when there is none.
    """
    hits, _ = _relevance(recommendations, truth, k)
    reciprocal = [1.0 / (np.argmax(row) + 1) if row.any() else 0.0 for row in hits]
    return float(np.mean(reciprocal))


def recall(recommendations: Sequence[Sequence[int]] | np.ndarray, truth: Truth, k: int) -> float:
    """Recall@k: the share of each case's relevant ids found in the first k, averaged over cases.

    Recall@k = (1/|U|) * sum_u |rec_u[:k] ∩ T_u| / |T_u|
    """
    hits, sizes = _relevance(recommendations, truth, k)
    return float(np.mean([row.sum() / size for row, size in zip(hits, sizes, strict=True)]))


def ndcg(recommendations: Sequence[Sequence[int]] | np.ndarray, truth: Truth, k: int) -> float:
    """NDCG@k with binary relevance, averaged over cases.

    DCG@k_u = sum_{i=1..k} rel_u(i) / log2(i + 1), with rel_u(i) = 1[rec_u[i] ∈ T_u];
    IDCG@k_u = sum_{i=1..min(|T_u|, k)} 1 / log2(i + 1); NDCG@k = (1/|U|) * sum_u DCG@k_u / IDCG@k_u.
    """
    hits, sizes = _relevance(recommendations, truth, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for row, size in zip(hits, sizes, strict=True):
        ideal = discounts[: min(int(size), k)].sum()
        scores.append(float((row * discounts[: len(row)]).sum() / ideal))
    return float(np.mean(scores))
