"""Behaviour vectors of tracks from co-listening in the event log: no trained model needed.

Tracks that the same listeners like are neighbours. From the log we count, for every pair
of tracks, the listeners that liked both (a like is a listen of at least `like_threshold`
of the track); weigh the counts by positive pointwise mutual information (PPMI, with the
context distribution smoothed to the power 0.75 as in word2vec), and factor the PPMI matrix
with a truncated SVD (Levy & Goldberg, "Neural word embedding as implicit matrix
factorization", NeurIPS 2014). A track's behaviour vector is its row of U * sqrt(S).

Only "warm" tracks, liked by at least `min_likes` listeners, get a vector; every other track
is cold and must rely on its content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommenders.models.nn import DependencyNotInstalled
from recommenders.models.sessions import SessionLog


@dataclass(frozen=True)
class CoListening:
    """Co-likes among the warm tracks of a log.

    Attributes:
        tracks: catalog ids of the warm tracks, ascending, shape (m,).
        counts: (m, m) CSR, listeners that liked both tracks; zero diagonal.
        likes: listeners that liked each warm track, shape (m,).
        plays: events per catalog track in the whole log (any fraction), shape (n_tracks,).
    """

    tracks: np.ndarray
    counts: sp.csr_matrix
    likes: np.ndarray
    plays: np.ndarray

    def __len__(self) -> int:
        return len(self.tracks)


def liked_matrix(log: SessionLog, n_tracks: int, like_threshold: float = 0.5) -> sp.csr_matrix:
    """Binary (listeners, n_tracks) CSR: which tracks each listener of the log liked."""
    liked = log.liked(like_threshold)
    tracks = log.track[liked]
    _, rows = np.unique(log.user[liked], return_inverse=True)
    n_rows = int(rows.max()) + 1 if len(rows) else 0
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, tracks)), shape=(n_rows, n_tracks))
    matrix.data[:] = 1.0  # duplicates were summed on construction: a listener likes a track once
    return matrix


def co_listening(log: SessionLog, n_tracks: int, *, like_threshold: float = 0.5, min_likes: int = 2) -> CoListening:
    """Count co-likes among the tracks liked by at least `min_likes` listeners of the log."""
    if min_likes < 1:
        raise ValueError(f"min_likes == {min_likes}, must be >= 1")
    plays = np.bincount(log.track, minlength=n_tracks)[:n_tracks]
    liked = liked_matrix(log, n_tracks, like_threshold)
    likes = np.asarray(liked.sum(axis=0)).ravel()
    warm = np.flatnonzero(likes >= min_likes)
    x = liked[:, warm].tocsr()
    counts = (x.T @ x).tocsr()
    counts.setdiag(0)
    counts.eliminate_zeros()
    return CoListening(warm, counts.astype(np.float32), likes[warm].astype(np.int64), plays.astype(np.int64))


def ppmi(counts: sp.csr_matrix, alpha: float = 0.75) -> sp.csr_matrix:
    """Positive PMI of a symmetric co-count matrix, context counts smoothed to the power `alpha`:
    max(0, log(c_ij * sum(c) / (c_i * P_alpha(j) * sum(c)))), P_alpha(j) = c_j^alpha / sum_k c_k^alpha."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return sp.csr_matrix(counts.shape, dtype=np.float32)
    row = np.asarray(counts.sum(axis=1)).ravel()
    context = np.asarray(counts.sum(axis=0)).ravel() ** alpha
    context /= context.sum()
    coo = counts.tocoo()
    values = np.log(coo.data / total) - np.log(row[coo.row] / total) - np.log(context[coo.col])
    keep = values > 0
    return sp.csr_matrix((values[keep].astype(np.float32), (coo.row[keep], coo.col[keep])), shape=counts.shape)


def behaviour_vectors(colisten: CoListening, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Truncated SVD of the PPMI matrix: (rows of the warm tracks that have a vector, vectors).

    Returns the indices into `colisten.tracks` of tracks with a non-empty PPMI row and their
    L2-normalised U * sqrt(S) rows, shape (k, dim) float32; `dim` is capped below the
    number of such tracks.
    """
    try:
        from sklearn.utils import extmath
    except ImportError as error:
        raise DependencyNotInstalled("the co-listening SVD needs scikit-learn: pip install 'botify-lab[ml]'") from error
    weights = ppmi(colisten.counts)
    rows = np.flatnonzero(np.diff(weights.indptr) > 0)
    if len(rows) < 3:
        raise ValueError(f"only {len(rows)} warm tracks share listeners; the log is too small for co-listening vectors")
    weights = weights[rows][:, rows]
    dim = min(dim, len(rows) - 1)
    u, s, _ = extmath.randomized_svd(weights, n_components=dim, random_state=seed)
    vectors = u * np.sqrt(s)[None, :]
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return rows, vectors.astype(np.float32)


def co_listened_neighbours(colisten: CoListening, rows: np.ndarray, candidates: np.ndarray, top: int, min_count: int = 2) -> list[np.ndarray]:
    """Ground truth for retrieval: for each of `rows` (indices into `colisten.tracks`), the
    `candidates` it shares at least `min_count` likers with, the `top` highest by PPMI first."""
    weights = ppmi(colisten.counts).tocsr()
    counts = colisten.counts.tocsr()
    allowed = np.zeros(len(colisten), dtype=bool)
    allowed[candidates] = True
    result = []
    for row in rows:
        start, stop = counts.indptr[row], counts.indptr[row + 1]
        columns, values = counts.indices[start:stop], counts.data[start:stop]
        keep = columns[(values >= min_count) & allowed[columns]]
        scores = np.asarray(weights[row, keep].todense()).ravel() if len(keep) else np.zeros(0)
        result.append(keep[np.argsort(-scores, kind="stable")][:top])
    return result
