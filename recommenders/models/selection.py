"""Turning scores into sets: the dynamic tag threshold and the margin-based neighbour selection.

Both rules pick a variable number of items per row instead of a fixed top-k:

- `assign_tags` (multi-label tagging): take every tag whose probability reaches 0.55; a
  track left without a tag tries the next, lower threshold of the grid
  0.55, 0.50, ..., 0.20, so every track gets at least one tag.
- `margin_select` (retrieval): keep every candidate whose similarity is at least
  `max * (1 - margin)`, where `max` is the row's best similarity, capped at `cap` items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.55, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2)
DEFAULT_MARGIN = 0.16
DEFAULT_CAP = 128


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    """Validate a threshold grid: non-empty, within (0, 1], strictly decreasing."""
    grid = tuple(float(t) for t in thresholds)
    if not grid:
        raise ValueError("thresholds is empty, must hold at least one value")
    if any(not 0.0 < t <= 1.0 for t in grid):
        raise ValueError(f"thresholds == {list(grid)}, every value must lie in (0, 1]")
    if any(b >= a for a, b in zip(grid, grid[1:])):
        raise ValueError(f"thresholds == {list(grid)}, must be strictly decreasing")
    return grid


def assign_tags(
    probabilities: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *, fallback: bool = True
) -> np.ndarray:
    """Binary tag assignment (n_tracks, n_tags) from probabilities of the same shape.

    Row by row, the first threshold of the (decreasing) grid at which at least one tag has
    probability >= threshold decides the row: every tag at or above it is assigned, ties
    included. A row below the last threshold gets its single most probable tag when
    `fallback` (ties broken towards the lower tag index), or no tag otherwise.
    """
    grid = check_thresholds(thresholds)
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be 2-D (tracks, tags), got shape {probabilities.shape}")
    best = probabilities.max(axis=1) if probabilities.shape[1] else np.zeros(len(probabilities))
    chosen = np.full(len(probabilities), np.nan)
    for threshold in reversed(grid):  # the highest threshold that the best tag reaches wins
        chosen[best >= threshold] = threshold
    assigned = probabilities >= chosen[:, None]  # NaN compares False: rows below the grid
    if fallback and probabilities.shape[1]:
        lost = np.flatnonzero(np.isnan(chosen))
        assigned[lost, np.argmax(probabilities[lost], axis=1)] = True
    return assigned


def margin_select(similarities: np.ndarray, margin: float = DEFAULT_MARGIN, cap: int = DEFAULT_CAP) -> list[np.ndarray]:
    """For each row of `similarities` (queries x candidates), the candidate indices kept by
    the dynamic threshold `max * (1 - margin)`, best first, at most `cap` of them.

    With a negative best similarity the threshold `max * (1 - margin)` lies above the best,
    so the best candidate is always kept on its own.
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin == {margin}, must be in [0, 1)")
    if cap < 1:
        raise ValueError(f"cap == {cap}, must be >= 1")
    similarities = np.asarray(similarities, dtype=np.float64)
    selected = []
    for row in similarities:
        if not len(row):
            selected.append(np.zeros(0, dtype=np.int64))
            continue
        best = row.max()
        threshold = min(best - margin * best, best)
        keep = np.flatnonzero(row >= threshold)
        keep = keep[np.argsort(-row[keep], kind="stable")][:cap]
        selected.append(keep)
    return selected
