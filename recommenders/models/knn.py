"""Pairing users by the cosine similarity of their liked tracks, and each user's candidate tracks.

For every user, neighbours are taken in order of similarity (most similar first, only
positive similarity) until the tracks they liked and the user has not heard number at least
`min_candidates`, or `max_neighbours` are taken. Those tracks are the user's candidates; when
there are more than `size`, `size` of them are drawn without replacement with probability
proportional to their votes (the summed similarity of the neighbours who liked them), so the
well-supported tracks are kept but the set is not frozen on the same few.

Users are internal row indices of the like matrix; tracks are external ids (matrix columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

BLOCK = 2_048  # users whose similarity rows are computed at once


@dataclass(frozen=True)
class Pairing:
    """Neighbours and candidates per user, as CSR-style arrays over user rows.

    Attributes:
        neighbour_offsets: (U + 1,) int64; neighbours of user u are `neighbours[offsets[u]:offsets[u + 1]]`.
        neighbours: (E,) int64 user rows, most similar first.
        similarities: (E,) float32 their cosine similarities.
        candidate_offsets: (U + 1,) int64; candidates of user u likewise.
        candidates: (C,) int64 track ids, by decreasing votes.
    """

    neighbour_offsets: np.ndarray
    neighbours: np.ndarray
    similarities: np.ndarray
    candidate_offsets: np.ndarray
    candidates: np.ndarray

    def candidates_of(self, user: int) -> np.ndarray:
        return self.candidates[self.candidate_offsets[user] : self.candidate_offsets[user + 1]]


def cosine_similarities(likes: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """(len(rows), U) cosine similarities of users `rows` to every user (sparse; self included)."""
    norms = np.sqrt(np.asarray(likes.multiply(likes).sum(axis=1)).ravel())
    normalised = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ likes
    return (normalised[rows] @ normalised.T).tocsr()


def pair_users(
    likes: sp.csr_matrix,
    heard: sp.csr_matrix,
    *,
    min_candidates: int,
    max_neighbours: int,
    size: int,
    rng: np.random.Generator,
) -> Pairing:
    """Neighbours and candidates of every user of the binary (U, N) `likes` matrix.

    `heard` (U, N) marks every track each user played (liked or not): never a candidate.
    """
    n_users = likes.shape[0]
    likes = likes.tocsr().astype(np.float32)
    heard = heard.tocsr()
    neighbour_rows: list[np.ndarray] = []
    neighbour_sims: list[np.ndarray] = []
    candidate_rows: list[np.ndarray] = []
    for start in range(0, n_users, BLOCK):
        rows = np.arange(start, min(start + BLOCK, n_users))
        similarity = cosine_similarities(likes, rows)
        for offset, user in enumerate(rows):
            row = similarity.getrow(offset)
            others, sims = row.indices, row.data
            keep = (others != user) & (sims > 0)
            others, sims = others[keep], sims[keep]
            order = np.lexsort((others, -sims))[:max_neighbours]
            others, sims = others[order], sims[order]
            chosen, votes = _grow(likes, heard.indices[heard.indptr[user] : heard.indptr[user + 1]], others, sims, min_candidates)
            neighbour_rows.append(others[:chosen].astype(np.int64))
            neighbour_sims.append(sims[:chosen].astype(np.float32))
            candidate_rows.append(_sample(votes, size, rng))
    return Pairing(
        neighbour_offsets=_offsets(neighbour_rows),
        neighbours=_concat(neighbour_rows, np.int64),
        similarities=_concat(neighbour_sims, np.float32),
        candidate_offsets=_offsets(candidate_rows),
        candidates=_concat(candidate_rows, np.int64),
    )


def _grow(likes: sp.csr_matrix, heard: np.ndarray, others: np.ndarray, sims: np.ndarray, minimum: int) -> tuple[int, dict[int, float]]:
    """Take neighbours in order until `minimum` unheard liked tracks are found; (neighbours taken, votes)."""
    votes: dict[int, float] = {}
    heard_set = set(heard.tolist())
    taken = 0
    for other, sim in zip(others.tolist(), sims.tolist(), strict=True):
        taken += 1
        for track in likes.indices[likes.indptr[other] : likes.indptr[other + 1]].tolist():
            if track not in heard_set:
                votes[track] = votes.get(track, 0.0) + sim
        if len(votes) >= minimum:
            break
    return taken, votes


def _sample(votes: dict[int, float], size: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `size` tracks drawn without replacement with probability proportional to votes, by decreasing votes."""
    if not votes:
        return np.zeros(0, dtype=np.int64)
    tracks = np.fromiter(votes.keys(), dtype=np.int64, count=len(votes))
    weights = np.fromiter(votes.values(), dtype=np.float64, count=len(votes))
    order = np.argsort(tracks)  # a canonical order, independent of dict insertion
    tracks, weights = tracks[order], weights[order]
    if len(tracks) > size:  # Gumbel top-k: a weighted draw without replacement
        keys = np.log(weights) - np.log(-np.log(rng.random(len(tracks))))
        keep = np.argsort(-keys, kind="stable")[:size]
        tracks, weights = tracks[keep], weights[keep]
    return tracks[np.lexsort((tracks, -weights))]


def _offsets(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([len(part) for part in parts])]).astype(np.int64)


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)
