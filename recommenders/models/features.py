"""Public per-track inputs of the learned models, as index and feature arrays over the catalog.

Everything here comes from the public catalog (artist, observed tags, content frames,
popularity prior) and a vocabulary of tracks seen in training. Track, artist and tag indices
are internal: 0 is reserved for "unknown" (a cold track, an artist or tag the model never
saw), known ones start at 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contracts.catalog import Catalog

MAX_TAGS = 16  # observed tags kept per track (the commonest come first in the vocabulary)


def vocabulary_index(ids: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Internal indices of external `ids` in the sorted `vocabulary`: 1.. if present, 0 if not."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(vocabulary) == 0:
        return np.zeros(ids.shape, dtype=np.int64)
    position = np.clip(np.searchsorted(vocabulary, ids), 0, len(vocabulary) - 1)
    return np.where(vocabulary[position] == ids, position + 1, 0).astype(np.int64)


def tag_table(catalog: Catalog, n_tags: int) -> np.ndarray:
    """(n_tracks, MAX_TAGS) int64: tag id + 1 of each track's observed tags (below `n_tags`), 0 as padding."""
    tags = np.zeros((catalog.n_tracks, MAX_TAGS), dtype=np.int64)
    matrix = catalog.tag_matrix()
    indptr, indices = matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64)
    counts = np.diff(indptr)
    owner = np.repeat(np.arange(catalog.n_tracks), counts)
    slot = np.arange(len(indices)) - np.repeat(indptr[:-1], counts)
    keep = (slot < MAX_TAGS) & (indices < n_tags)
    tags[owner[keep], slot[keep]] = indices[keep] + 1
    return tags


def mean_content(catalog: Catalog) -> np.ndarray:
    """(n_tracks, frame_dim) float32: the mean content frame of every track (zeros without frames)."""
    out = np.zeros((catalog.n_tracks, catalog.frame_dim), dtype=np.float32)
    for track in np.flatnonzero(catalog.frame_lengths() > 0):
        out[track] = catalog.frames(int(track)).mean(axis=0)
    return out


@dataclass(frozen=True)
class TrackInputs:
    """Per-track model inputs, indexed by external track id.

    Attributes:
        track_index: (n_tracks,) int64, 1.. for tracks in the training vocabulary, 0 when cold.
        artist_index: (n_tracks,) int64, artist id + 1, 0 for artists beyond the trained ones.
        tags: (n_tracks, MAX_TAGS) int64, tag id + 1 per observed tag, 0 as padding.
        content: (n_tracks, frame_dim) float32, standardised mean content frame.
        popularity: (n_tracks, 1) float32, standardised log popularity prior.
    """

    track_index: np.ndarray
    artist_index: np.ndarray
    tags: np.ndarray
    content: np.ndarray
    popularity: np.ndarray

    @classmethod
    def build(
        cls, catalog: Catalog, vocabulary: np.ndarray, n_artists: int, n_tags: int, stats: dict[str, np.ndarray], content: np.ndarray | None = None
    ) -> TrackInputs:
        """Inputs for every track of `catalog`, using the vocabulary and statistics fixed at training.

        `content` is `mean_content(catalog)` when the caller already has it.
        """
        artist = catalog.artist.astype(np.int64)
        tags = tag_table(catalog, n_tags)
        content = mean_content(catalog) if content is None else content
        content = (content - stats["content_mean"]) / stats["content_std"]
        log_pop = np.log(catalog.popularity + 1e-9)
        popularity = ((log_pop - stats["popularity_mean"]) / stats["popularity_std"]).astype(np.float32)[:, None]
        return cls(
            track_index=vocabulary_index(np.arange(catalog.n_tracks), vocabulary),
            artist_index=np.where(artist < n_artists, artist + 1, 0),
            tags=tags,
            content=content.astype(np.float32),
            popularity=popularity,
        )


def feature_statistics(catalog: Catalog, content: np.ndarray) -> dict[str, np.ndarray]:
    """Standardisation constants of the content (`mean_content(catalog)`) and popularity inputs, fixed at training."""
    log_pop = np.log(catalog.popularity + 1e-9)
    return {
        "content_mean": content.mean(axis=0).astype(np.float32),
        "content_std": np.maximum(content.std(axis=0), 1e-6).astype(np.float32),
        "popularity_mean": np.asarray(log_pop.mean(), dtype=np.float32),
        "popularity_std": np.asarray(max(log_pop.std(), 1e-6), dtype=np.float32),
    }
