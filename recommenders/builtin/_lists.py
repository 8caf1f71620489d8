"""Ranked lists keyed by an id (a user, or a track), and co-listening similarity to build them.

`RankedLists` holds, for each key, tracks best first, in CSR form (`keys`, `indptr`, `tracks`,
`scores`), reads and writes them as a Parquet table (key, rank, track, score), reads the JSON
lines that RecTools users and the course write (`read_jsonl`), and scans a list for the first
track a session may still play. `co_listening` and `top_k_rows` build such
lists from the event log with sparse matrices, without Python loops over users or tracks.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Container, Mapping, Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from contracts.columns import Columns
from recommenders.builtin._artifacts import ArtifactError, read_table
from recommenders.dataset import Dataset


class RankedLists:
    """For each key (external id), tracks best first, with their scores.

    Args:
        keys: the ids that have a list, ascending, int64, shape (n_keys,).
        indptr: list boundaries, shape (n_keys + 1,): key i's list is `tracks[indptr[i]:indptr[i+1]]`.
        tracks: track ids, int64.
        scores: one score per entry of `tracks`, float64 (higher is better; kept for inspection).
    """

    def __init__(self, keys: np.ndarray, indptr: np.ndarray, tracks: np.ndarray, scores: np.ndarray) -> None:
        self.keys = np.asarray(keys, dtype=np.int64)
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.tracks = np.asarray(tracks, dtype=np.int64)
        self.scores = np.asarray(scores, dtype=np.float64)
        if len(self.indptr) != len(self.keys) + 1 or len(self.tracks) != len(self.scores) or self.indptr[-1] != len(self.tracks):
            raise ValueError("keys, indptr, tracks and scores do not describe the same lists")
        self._row = dict(zip(self.keys.tolist(), range(len(self.keys)), strict=True))
        self._indptr_py = self.indptr.tolist()
        self._tracks_py = array("q", self.tracks.tobytes())

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, key: int) -> np.ndarray:
        """The list of `key` (empty when it has none)."""
        row = self._row.get(key)
        if row is None:
            return np.empty(0, dtype=np.int64)
        return self.tracks[self.indptr[row] : self.indptr[row + 1]]

    def first_allowed(self, key: int, played: Container[int], release_day: Sequence[int] | None, day: int | None) -> int:
        """The first track of `key`'s list that is not in `played` and is released by `day`; -1 if none."""
        row = self._row.get(key)
        if row is None:
            return -1
        tracks = self._tracks_py
        for i in range(self._indptr_py[row], self._indptr_py[row + 1]):
            track = tracks[i]
            if track in played:
                continue
            if day is not None and release_day is not None and release_day[track] > day:
                continue
            return track
        return -1

    # -- building and storage -------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, lists: Mapping[int, Sequence[int]]) -> Self:
        """Lists from a plain mapping key -> tracks (best first); scores become -rank."""
        keys = np.array(sorted(lists), dtype=np.int64)
        lengths = np.array([len(lists[k]) for k in keys.tolist()], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        tracks = np.array([t for k in keys.tolist() for t in lists[k]], dtype=np.int64)
        scores = -np.concatenate([np.arange(n, dtype=np.float64) for n in lengths]) if len(keys) else np.empty(0)
        return cls(keys, indptr, tracks, scores)

    @classmethod
    def from_csr(cls, matrix: sp.csr_matrix, keys: np.ndarray | None = None) -> Self:
        """Lists from the rows of a CSR matrix whose rows are already sorted best first.

        Row i belongs to `keys[i]` (default: i); rows without entries get no list.
        """
        lengths = np.diff(matrix.indptr)
        row_keys = np.arange(matrix.shape[0]) if keys is None else np.asarray(keys)
        nonempty = lengths > 0
        indptr = np.concatenate([[0], np.cumsum(lengths[nonempty])])
        return cls(row_keys[nonempty], indptr, matrix.indices, matrix.data)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, key: str) -> Self:
        """Lists from a table with columns `key`, `rank`, `track` and optionally `score`."""
        frame = frame.sort_values([key, "rank"], kind="stable")
        keys, counts = np.unique(frame[key].to_numpy(np.int64), return_counts=True)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        scores = frame["score"].to_numpy(np.float64) if "score" in frame.columns else -frame["rank"].to_numpy(np.float64)
        return cls(keys, indptr, frame["track"].to_numpy(np.int64), scores)

    def to_frame(self, key: str) -> pd.DataFrame:
        """The lists as a table (`key`, rank, track, score), rank 0 the best."""
        lengths = np.diff(self.indptr)
        return pd.DataFrame(
            {
                key: np.repeat(self.keys, lengths),
                "rank": np.arange(len(self.tracks)) - np.repeat(self.indptr[:-1], lengths),
                "track": self.tracks,
                "score": self.scores,
            }
        )

    def write(self, path: Path, key: str) -> None:
        self.to_frame(key).to_parquet(path, index=False)

    @classmethod
    def read(cls, directory: Path, filename: str, key: str, n_tracks: int) -> Self:
        """Read a table written by `write` (or by any tool with the same columns) and check its ids."""
        frame = read_table(directory, filename, {key: "int", "rank": "int", "track": "int"})
        tracks = frame["track"].to_numpy(np.int64)
        if len(tracks) and (tracks.min() < 0 or tracks.max() >= n_tracks):
            raise ArtifactError(f"{directory / filename}: track ids must lie in 0..{n_tracks - 1} (another world's artifact?)")
        if frame.duplicated([key, "rank"]).any():
            raise ArtifactError(f"{directory / filename}: ({key}, rank) pairs must be unique")
        return cls.from_frame(frame, key)


    @classmethod
    def read_jsonl(cls, path: Path, key: str, n_tracks: int) -> Self:
        """Lists from a JSON-lines file, one `{key: id, "tracks": [track, ...]}` object per line, best first.

        This is what the course's notebooks write from RecTools' recommendations (`{"user": u,
        "tracks": [...]}`; `{"track": t, "tracks": [...]}` for track-to-tracks lists). Blank
        lines are skipped; anything else that is not such an object, a track id outside the
        catalog, a repeated key or a track listed twice raises `ArtifactError` naming the file
        and the line.
        """
        lists: dict[int, list[int]] = {}
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ArtifactError(f"cannot read {path}: {error}") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise ArtifactError(f"{where}: not JSON ({error.msg})") from None
            if not isinstance(entry, dict) or set(entry) != {key, "tracks"}:
                raise ArtifactError(f'{where}: must be an object with exactly the keys "{key}" and "tracks", got {line.strip()[:80]}')
            owner, tracks = entry[key], entry["tracks"]
            if not _is_int(owner):
                raise ArtifactError(f"{where}: {key} == {owner!r}, must be an integer id")
            if not isinstance(tracks, list) or not all(_is_int(track) for track in tracks):
                raise ArtifactError(f"{where}: tracks must be a list of integer track ids")
            outside = [track for track in tracks if not 0 <= track < n_tracks]
            if outside:
                raise ArtifactError(f"{where}: track {outside[0]} is not in the catalog (ids 0..{n_tracks - 1}; another world's list?)")
            if len(set(tracks)) != len(tracks):
                raise ArtifactError(f"{where}: a track is listed twice")
            if owner in lists:
                raise ArtifactError(f"{where}: {key} {owner} already has a list")
            lists[owner] = tracks
        return cls.from_mapping(lists)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def top_k_rows(matrix: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `k` best entries of each row of `matrix`: (indptr, columns, values), best first.

    Ties go to the lower column. Explicit zeros are dropped. Vectorised: one lexsort.
    """
    coo = matrix.tocoo()
    keep = coo.data > 0
    rows, cols, vals = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), coo.data[keep].astype(np.float64)
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(matrix.shape[0] + 1))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    counts = np.bincount(rows[keep], minlength=matrix.shape[0])
    return np.concatenate([[0], np.cumsum(counts)]), cols[keep], vals[keep]


def session_like_matrix(dataset: Dataset, n_tracks: int, threshold: float) -> sp.csr_matrix:
    """Binary (n_sessions, n_tracks) matrix: which tracks each session liked (`time >= threshold`).

    A session is a (user, session) pair; rows without a session id count as one session per user.
    """
    frame = dataset.interactions
    liked = frame[(frame[Columns.TIME] >= threshold) & (frame[Columns.TRACK] >= 0) & (frame[Columns.TRACK] < n_tracks)]
    session = liked[Columns.SESSION] if Columns.SESSION in liked.columns else pd.Series(pd.NA, index=liked.index)
    groups = pd.MultiIndex.from_arrays([liked[Columns.USER].to_numpy(), session.fillna(-1).to_numpy(np.int64)])
    rows, _ = pd.factorize(groups)
    matrix = sp.csr_matrix(
        (np.ones(len(liked), dtype=np.float64), (rows, liked[Columns.TRACK].to_numpy(np.int64))),
        shape=(int(rows.max()) + 1 if len(rows) else 0, n_tracks),
    )
    matrix.data[:] = 1.0  # a track liked twice in a session counts once
    return matrix


def co_listening(dataset: Dataset, n_tracks: int, threshold: float, neighbours: int) -> sp.csr_matrix:
    """Cosine similarity of tracks by the sessions that liked them, `neighbours` best per track.

    sim(i, j) = n(i and j) / sqrt(n(i) * n(j)), n counting sessions that liked the track(s);
    the diagonal is left out. Shape (n_tracks, n_tracks), CSR.
    """
    likes = session_like_matrix(dataset, n_tracks, threshold)
    counts = (likes.T @ likes).tocoo()
    diagonal = np.asarray(likes.sum(axis=0)).ravel()
    off = counts.row != counts.col
    rows, cols = counts.row[off], counts.col[off]
    similarity = counts.data[off] / np.sqrt(diagonal[rows] * diagonal[cols])
    indptr, cols, vals = top_k_rows(sp.csr_matrix((similarity, (rows, cols)), shape=(n_tracks, n_tracks)), neighbours)
    return sp.csr_matrix((vals, cols, indptr), shape=(n_tracks, n_tracks))
