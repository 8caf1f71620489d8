"""Offline metrics of the content-based models: tag ranking quality and neighbour retrieval.

Pure functions of (scores or selections, ground truth); no model code here. Average
precision is scikit-learn's; Recall@K and F2 follow the retrieval write-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from recommenders import metrics
from recommenders.models.nn import DependencyNotInstalled


class TagScores(NamedTuple):
    """Macro average precision of tag scores on one evaluation set."""

    macro_ap: float  # mean over evaluated tags of sklearn's average precision
    n_tags: int  # tags with at least one positive track (the others have no defined AP)
    n_tracks: int  # tracks evaluated


def macro_average_precision(truth: np.ndarray, scores: np.ndarray) -> TagScores:
    """Macro AP over the tags that have at least one positive in `truth`.

    AP of one tag = sum_n (R_n - R_{n-1}) P_n over the tracks ranked by score (scikit-learn's
    `average_precision_score`); tags without a positive have no AP and are left out, as
    scikit-learn would otherwise warn and count them as 0.

    Args:
        truth: binary (n_tracks, n_tags).
        scores: (n_tracks, n_tags), higher means more likely.
    """
    try:
        from sklearn import metrics
    except ImportError as error:
        raise DependencyNotInstalled("average precision needs scikit-learn: pip install 'botify-lab[ml]'") from error
    truth = np.asarray(truth) > 0
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape:
        raise ValueError(f"truth has shape {truth.shape} but scores {scores.shape}")
    present = truth.any(axis=0)
    if not present.any():
        raise ValueError("no tag has a positive track in truth: average precision is undefined")
    ap = metrics.average_precision_score(truth[:, present], scores[:, present], average="macro")
    return TagScores(float(ap), int(present.sum()), len(truth))


def frequency_baseline(train_tags: np.ndarray, n_tracks: int) -> np.ndarray:
    """The trivial tagger: every track gets each tag's training frequency as its score."""
    frequency = np.asarray(train_tags, dtype=np.float64).mean(axis=0)
    return np.broadcast_to(frequency, (n_tracks, len(frequency)))


def recall_at_k(ranked: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> float:
    """Mean over queries of |top-k ∩ relevant| / |relevant|; queries without a relevant item are skipped.

    Args:
        ranked: (n_queries, >= k) candidate ids, best first.
        relevant: per query, the ids that should be retrieved.
    """
    if k < 1:
        raise ValueError(f"k == {k}, must be >= 1")
    kept = [i for i, truth in enumerate(relevant) if len(truth)]
    if not kept:
        return float("nan")
    return metrics.recall(np.asarray(ranked)[kept], [relevant[i] for i in kept], k)


class F2Scores(NamedTuple):
    """Set-retrieval quality averaged over queries (the retrieval write-up's metric)."""

    f2: float  # mean of per-query F2 = 5 P R / (4 P + R), 0 where P = R = 0
    precision: float  # mean per-query precision (0 for an empty selection)
    recall: float  # mean per-query recall
    selected: float  # mean number of selected candidates


def f2_scores(selected: Sequence[np.ndarray], relevant: Sequence[np.ndarray]) -> F2Scores:
    """Per-query F-beta with beta = 2 (recall weighs four times precision), averaged.

    Queries without a relevant item are skipped.
    """
    f2s, precisions, recalls, sizes = [], [], [], []
    for chosen, truth in zip(selected, relevant, strict=True):
        if not len(truth):
            continue
        hits = len(np.intersect1d(chosen, truth))
        precision = hits / len(chosen) if len(chosen) else 0.0
        recall = hits / len(truth)
        f2s.append(5 * precision * recall / (4 * precision + recall) if precision + recall > 0 else 0.0)
        precisions.append(precision)
        recalls.append(recall)
        sizes.append(len(chosen))
    if not f2s:
        return F2Scores(float("nan"), float("nan"), float("nan"), float("nan"))
    return F2Scores(float(np.mean(f2s)), float(np.mean(precisions)), float(np.mean(recalls)), float(np.mean(sizes)))
