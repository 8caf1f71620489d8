"""Content frames in memory, and padded batches of them for the sequence encoders.

A track's frames are a variable-length sequence of vectors (the world's "audio
embeddings"). `FrameStore` keeps the frames of a set of tracks as one flat float16 array
plus offsets (the world's own storage format), and cuts padded batches out of it with
numpy fancy indexing: no per-track Python loop on the training path.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from contracts.catalog import Catalog


class FrameStore:
    """The frames of `tracks` (catalog ids), addressed by row 0..len(tracks)-1.

    Attributes:
        tracks: catalog ids of the rows, shape (n,).
        frames: all frames, shape (total_frames, frame_dim), float16.
        offsets: row r's frames are `frames[offsets[r]:offsets[r + 1]]`, shape (n + 1,).
    """

    def __init__(self, tracks: np.ndarray, frames: np.ndarray, offsets: np.ndarray) -> None:
        if len(offsets) != len(tracks) + 1 or offsets[-1] != len(frames):
            raise ValueError(f"offsets of length {len(offsets)} do not fit {len(tracks)} tracks and {len(frames)} frames")
        lengths = np.diff(offsets)
        if len(lengths) and lengths.min() < 1:
            raise ValueError("every track needs at least one content frame")
        self.tracks = np.asarray(tracks, dtype=np.int64)
        self.frames = frames
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_catalog(cls, catalog: Catalog, tracks: np.ndarray | None = None) -> FrameStore:
        """Load the frames of `tracks` (default: every track of the catalog) into memory."""
        tracks = np.arange(catalog.n_tracks) if tracks is None else np.asarray(tracks, dtype=np.int64)
        lengths = catalog.frame_lengths()[tracks] if len(tracks) else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        frames = np.empty((int(offsets[-1]), catalog.frame_dim), dtype=np.float16)
        for row, track in enumerate(tracks):
            frames[offsets[row] : offsets[row + 1]] = catalog.frames(int(track))
        return cls(tracks, frames, offsets)

    def __len__(self) -> int:
        return len(self.tracks)

    @property
    def frame_dim(self) -> int:
        return int(self.frames.shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """Number of frames of every row, shape (n,)."""
        return np.diff(self.offsets)

    def subset(self, rows: np.ndarray) -> FrameStore:
        """A store of the given rows only (copies their frames)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        index = np.repeat(self.offsets[rows] - offsets[:-1], lengths) + np.arange(int(offsets[-1]))
        return FrameStore(self.tracks[rows], self.frames[index], offsets)

    def batch(
        self, rows: np.ndarray, max_len: int | None = None, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Padded frames of `rows`: (B, L, frame_dim) float32 with zeros after each length, and
        the lengths (B,) int64.

        With `max_len`, longer sequences are cropped to `max_len` frames: a random window when
        `rng` is given (training), the first `max_len` frames otherwise.
        """
        rows = np.asarray(rows, dtype=np.int64)
        full = self.lengths[rows]
        lengths = full if max_len is None else np.minimum(full, max_len)
        if rng is not None and max_len is not None:
            start = (rng.random(len(rows)) * (full - lengths + 1)).astype(np.int64)
        else:
            start = np.zeros(len(rows), dtype=np.int64)
        width = int(lengths.max()) if len(rows) else 0
        position = np.arange(width)[None, :]
        valid = position < lengths[:, None]
        index = np.where(valid, self.offsets[rows, None] + start[:, None] + position, 0)
        out = self.frames[index].astype(np.float32)
        out[~valid] = 0.0
        return out, lengths

    def mean_frames(self) -> np.ndarray:
        """Each row's average frame, shape (n, frame_dim) float32: the simplest content vector."""
        sums = np.add.reduceat(self.frames.astype(np.float32), self.offsets[:-1], axis=0) if len(self) else np.zeros((0, self.frame_dim), np.float32)
        return sums / self.lengths[:, None]


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket_batches: int = 16
) -> Iterator[np.ndarray]:
    """Row indices of one shuffled epoch, grouped so that a batch holds similar lengths.

    Rows are shuffled, cut into buckets of `bucket_batches` batches, sorted by length inside
    a bucket (longest first, as the tag write-up does) and cut into batches; the batch order
    is shuffled again. Less padding means less wasted attention on short tracks.
    """
    order = rng.permutation(len(lengths))
    span = batch_size * bucket_batches
    batches: list[np.ndarray] = []
    for start in range(0, len(order), span):
        bucket = order[start : start + span]
        bucket = bucket[np.argsort(-lengths[bucket], kind="stable")]
        batches.extend(bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size))
    for index in rng.permutation(len(batches)):
        yield batches[index]
