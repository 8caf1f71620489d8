"""`bpr_knn`: candidates from similar listeners (KNN), ranked by BPR and by the session so far.

Training pairs users by the cosine similarity of their liked tracks and keeps, per user, a
fixed-size sample of the tracks their neighbours liked and they never heard (see `knn`); a BPR
model learns user and track embeddings from the likes (see `nn.bpr`). Both are stored.

Serving scores track i for a request of user u as

    score(i) = <p_u + w * s, q_i> + b_i,

where s is the listen-time-weighted mean of the embeddings of the session's recent tracks and
w the `session_weight` parameter, so the ranking follows the session. The user's KNN
candidates get `candidate_boost` added: with `.inf` the answer is always the best unplayed
candidate (the write-up's pipeline), with a finite boost a clearly better track of the whole
catalog can win (a finite default served longer sessions in simulation: sparse logs give
small candidate sets that often miss what the session is about; the defaults of every
serving parameter come from an online search, `BPRKNNServing`). Once the candidates are
exhausted, and for a cold user (no likes in training: p_u = 0, no candidates), the whole
catalog is ranked. When neither the user nor any recent session track was seen liked in
training, the model knows nothing that applies, and the ranking falls back to the session's
artists (weighted by how long their tracks were heard), then the learned bias (how often a
track was liked): sticky-artist-like. A track unknown to the model (released after
training) has a zero embedding and the lowest bias: it comes last.

Serving is numpy: one (B, D) x (D, N) product per batch.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from contracts.catalog import Catalog
from recommenders.dataset import Dataset
from recommenders.models.artifacts import WEIGHTS_FILE, ArtifactError, read_metadata, read_weights, write_artifact
from recommenders.models.config import BPRKNNConfig, BPRKNNServing, serving_params
from recommenders.models.features import vocabulary_index
from recommenders.models.knn import Pairing, pair_users
from recommenders.models.nn import TrainingError, require_torch
from recommenders.models.ranking import Context, ScoringRecommender, lookup
from recommenders.models.sessions import SessionLog, as_session_log, describe, sample_excluding

logger = logging.getLogger(__name__)

ARRAYS = (
    "user_vocabulary",
    "user_factors",
    "item_factors",
    "item_bias",
    "neighbour_offsets",
    "neighbours",
    "similarities",
    "candidate_offsets",
    "candidates",
    "known_tracks",
)
FALLBACK_ARTIST_WEIGHT = 100.0  # puts the session's artists above everything in the fallback ranking


class BPRKNNRecommender(ScoringRecommender):
    """KNN candidates ranked by BPR plus the session (see the module docstring).

    Parameters (serving): `session_weight` (default 1.07), the weight w of the session's tracks;
    `artist_weight` (default 2.08), added per unit of listen time the session gave a track's
    artist; `candidate_boost` (default 0.78, `.inf` for candidates only), added to the user's
    KNN candidates; `artist_penalty` (default 0.89), subtracted per earlier play of a track's
    artist in the session.
    """

    name = "bpr_knn"
    config_class = BPRKNNConfig

    def __init__(self, catalog: Catalog, **params: Any) -> None:
        serving = serving_params(BPRKNNServing, params, self.name)
        super().__init__(catalog)
        self._params = serving
        self.session_weight = serving.session_weight
        self.artist_penalty = serving.artist_penalty
        self.candidate_boost = serving.candidate_boost
        self.artist_weight = serving.artist_weight
        self.candidates, self.n_lists, self.n_probe = serving.candidates, serving.n_lists, serving.n_probe
        self.config = BPRKNNConfig()
        self.history: list[dict[str, float]] = []
        self.data: dict[str, Any] = {}
        self._arrays: dict[str, np.ndarray] = {}

    def get_params(self) -> dict[str, Any]:
        return self._params.model_dump()

    # Training -----------------------------------------------------------------------------

    def _fit(self, events: pd.DataFrame | Dataset | SessionLog, config: BPRKNNConfig | None = None, device: str = "cpu", progress: bool = False, **options: Any) -> None:
        """Pair users and train BPR on `events` (a DataFrame of the log, a `Dataset` or a `SessionLog`)."""
        if options:
            raise TypeError(f"bpr_knn.fit got unknown option(s): {', '.join(sorted(options))}")
        require_torch()
        from recommenders.models.nn.bpr import train_bpr

        config = config or BPRKNNConfig()
        started = time.perf_counter()
        n_tracks = self.catalog.n_tracks
        log = as_session_log(events, n_tracks)
        liked = log.liked(config.like_threshold)
        if not liked.any():
            raise TrainingError(f"bpr_knn needs likes (plays with time >= {config.like_threshold}); the log has none")
        rng = np.random.default_rng(config.seed)
        vocabulary = np.unique(log.user[liked])
        like_user = vocabulary_index(log.user[liked], vocabulary) - 1
        like_track, like_ts = log.track[liked], log.ts[liked]
        # One row per (user, track), keeping the latest like.
        order = np.lexsort((-like_ts, like_track, like_user))
        like_user, like_track, like_ts = like_user[order], like_track[order], like_ts[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (np.diff(like_user) != 0) | (np.diff(like_track) != 0)
        like_user, like_track, like_ts = like_user[first], like_track[first], like_ts[first]
        n_users = len(vocabulary)
        likes = sp.csr_matrix((np.ones(len(like_user), np.float32), (like_user, like_track)), shape=(n_users, n_tracks))
        played_user = vocabulary_index(log.user, vocabulary) - 1
        known = played_user >= 0
        heard = sp.csr_matrix((np.ones(int(known.sum()), np.float32), (played_user[known], log.track[known])), shape=(n_users, n_tracks))
        heard.sum_duplicates()
        heard.data[:] = 1.0

        validation_rows, validation = self._validation_split(like_user, like_track, like_ts, heard, config, rng)
        train = np.ones(len(like_user), dtype=bool)
        train[validation_rows] = False
        pairing = pair_users(
            likes, heard, min_candidates=config.min_candidates, max_neighbours=config.max_neighbours, size=config.candidates, rng=rng
        )
        weights, history = train_bpr(
            n_users, n_tracks, like_user[train], like_track[train],
            validation, config, device=device, progress=progress,
        )
        self.config = config
        self.history = history
        candidates_per_user = np.diff(pairing.candidate_offsets)
        self.data = {
            **describe(log),
            "likes": int(len(like_user)),
            "paired_users": n_users,
            "validation_likes": len(validation),
            "mean_neighbours": float(np.diff(pairing.neighbour_offsets).mean()) if n_users else 0.0,
            "mean_candidates": float(candidates_per_user.mean()) if n_users else 0.0,
            "n_tracks": n_tracks,
            "seconds": time.perf_counter() - started,
            "history": history,
        }
        self._arrays = {
            "user_vocabulary": vocabulary,
            "user_factors": weights["users.weight"],
            "item_factors": weights["items.weight"],
            "item_bias": weights["bias.weight"][:, 0],
            "neighbour_offsets": pairing.neighbour_offsets,
            "neighbours": pairing.neighbours,
            "similarities": pairing.similarities,
            "candidate_offsets": pairing.candidate_offsets,
            "candidates": pairing.candidates,
            "known_tracks": np.unique(like_track[train]),
        }
        self._prepare()

    @staticmethod
    def _validation_split(
        like_user: np.ndarray, like_track: np.ndarray, like_ts: np.ndarray, heard: sp.csr_matrix, config: BPRKNNConfig, rng: np.random.Generator
    ) -> tuple[np.ndarray, Any]:
        """Hold out the latest like of a `validation_fraction` share of users with two likes or more.

        `like_user` is sorted; returns (rows held out, the `Validation` set).
        """
        from recommenders.models.nn.bpr import Validation

        n_users, n_tracks = heard.shape
        offsets = np.searchsorted(like_user, np.arange(n_users + 1))
        eligible = np.flatnonzero(np.diff(offsets) >= 2)
        size = int(round(len(eligible) * config.validation_fraction))
        chosen = np.sort(rng.choice(eligible, size=size, replace=False)) if size else eligible[:0]
        rows, negatives = [], []
        for user in chosen:
            start, stop = offsets[user], offsets[user + 1]
            unheard = sample_excluding(rng, n_tracks, heard.indices[heard.indptr[user] : heard.indptr[user + 1]], config.validation_negatives)
            if len(unheard) == config.validation_negatives:
                rows.append(int(start + np.argmax(like_ts[start:stop])))
                negatives.append(unheard)
        rows_array = np.asarray(rows, dtype=np.int64)
        validation = Validation(
            users=like_user[rows_array].astype(np.int64),
            positives=like_track[rows_array].astype(np.int64),
            negatives=np.asarray(negatives, dtype=np.int64).reshape(len(rows), config.validation_negatives),
        )
        return rows_array, validation

    # Artifacts ----------------------------------------------------------------------------

    def _save(self, directory: Path) -> None:
        write_artifact(directory, self.name, self.config.model_dump(), self.data, self._arrays, self.catalog)

    def _load(self, directory: Path) -> None:
        metadata = read_metadata(directory, self.name, self.catalog)
        self.config = BPRKNNConfig.model_validate(metadata["config"])
        self.data = metadata["data"]
        self.history = list(self.data.get("history", []))
        self._arrays = read_weights(directory, ARRAYS)
        self._check_sizes(directory)
        self._prepare()

    def _check_sizes(self, directory: Path) -> None:
        """Refuse arrays whose lengths disagree with each other or with the tracks trained on: a
        shorter track table would otherwise pass for tracks released after training."""
        arrays = self._arrays
        users = len(arrays["user_vocabulary"])
        expected = {
            "item_factors": int(self.data.get("n_tracks", len(arrays["item_factors"]))),
            "item_bias": len(arrays["item_factors"]),
            "user_factors": users,
            "neighbour_offsets": len(arrays["user_factors"]) + 1,
            "candidate_offsets": len(arrays["user_factors"]) + 1,
            "similarities": len(arrays["neighbours"]),
        }
        for name, rows in expected.items():
            if len(arrays[name]) != rows:
                raise ArtifactError(
                    f"{directory / WEIGHTS_FILE}: {name} has {len(arrays[name])} rows where {rows} belong (truncated, or mixed from another artifact?)"
                )
        for name, values in (("neighbour_offsets", "neighbours"), ("candidate_offsets", "candidates")):
            offsets = arrays[name]
            if len(offsets) and (offsets[0] != 0 or offsets[-1] != len(arrays[values]) or np.any(np.diff(offsets) < 0)):
                raise ArtifactError(f"{directory / WEIGHTS_FILE}: {name} do not index {values} (truncated, or mixed from another artifact?)")

    def _prepare(self) -> None:
        """Serving tables: user factors with a zero row for cold users, track tables padded to the catalog."""
        arrays = self._arrays
        self.history_length = self.config.history
        dim = arrays["item_factors"].shape[1]
        self._users = np.vstack([np.zeros((1, dim), np.float32), arrays["user_factors"]]).astype(np.float32)
        items, bias = arrays["item_factors"].astype(np.float32), arrays["item_bias"].astype(np.float32)
        missing = self.catalog.n_tracks - len(items)
        if missing > 0:  # tracks released after training: unknown to the model, ranked last
            items = np.vstack([items, np.zeros((missing, dim), np.float32)])
            bias = np.concatenate([bias, np.full(missing, bias.min() - 1.0 if len(bias) else 0.0, np.float32)])
        self._items = np.ascontiguousarray(items[: self.catalog.n_tracks])
        self._bias = bias[: self.catalog.n_tracks]
        self._known = np.zeros(self.catalog.n_tracks, dtype=bool)
        known = arrays["known_tracks"]
        self._known[known[known < self.catalog.n_tracks]] = True
        self._pairing = Pairing(
            arrays["neighbour_offsets"], arrays["neighbours"], arrays["similarities"], arrays["candidate_offsets"], arrays["candidates"]
        )
        self._item_bias = np.ascontiguousarray(np.hstack([self._items, self._bias[:, None]]))
        self._build_index()

    # Serving ------------------------------------------------------------------------------

    def session_vectors(self, context: Context) -> np.ndarray:
        """(B, D): the listen-time-weighted mean embedding of each request's recent session tracks."""
        weights = context.recent_times * (context.recent >= 0)
        vectors = self._items[np.maximum(context.recent, 0)]
        return (weights[..., None] * vectors).sum(1) / np.maximum(weights.sum(1, keepdims=True), 1e-6)

    def _queries(self, context: Context) -> tuple[np.ndarray, np.ndarray]:
        """(user rows in the factor table, 0 for cold users; (B, D) query vectors p_u + w * s)."""
        users = vocabulary_index(context.users, self._arrays["user_vocabulary"])
        return users, self._users[users] + self.session_weight * self.session_vectors(context)

    def _artist_affinity(self, context: Context, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, n_artists) weighted listen time of each session artist, and (B,) the weight each row gives it.

        The weight is `artist_weight` for a request the model knows something about and the
        fallback weight for one it knows nothing about (module docstring).
        """
        recent = np.maximum(context.recent, 0)
        informed = (users > 0) | ((context.recent >= 0) & self._known[recent]).any(axis=1)
        weight = np.where(informed, self.artist_weight, FALLBACK_ARTIST_WEIGHT).astype(np.float32)
        n_artists, artist = self.catalog.n_artists, self.catalog.artist
        rows = np.repeat(np.arange(len(users)), recent.shape[1])
        valid = (context.recent >= 0).ravel()
        keys = (rows * n_artists + artist[recent].ravel())[valid]
        affinity = np.bincount(keys, weights=context.recent_times.ravel()[valid], minlength=len(users) * n_artists).astype(np.float32)
        return affinity.reshape(len(users), n_artists), weight

    def _score_all(self, context: Context) -> np.ndarray:
        users, query = self._queries(context)
        scores = query @ self._items.T + self._bias
        affinity, weight = self._artist_affinity(context, users)
        if np.any(weight > 0):  # the session's artists, by how long their tracks were heard
            # Only the session's artists' tracks change: cheaper than a dense (B, n_tracks) gather.
            for row, heard in zip(*np.nonzero(affinity * (weight[:, None] > 0)), strict=True):
                scores[row, self.catalog.tracks_of_artist(heard)] += weight[row] * affinity[row, heard]
        return scores

    # Candidate stage: [query, 1] . [item, bias], plus the session artists and the KNN pool as forced candidates

    def _item_vectors(self) -> np.ndarray:
        return self._item_bias

    def _query_vectors(self, context: Context) -> np.ndarray:
        query = self._queries(context)[1]
        return np.hstack([query, np.ones((len(query), 1), np.float32)])

    def _pool_pairs(self, context: Context) -> tuple[np.ndarray, np.ndarray]:
        """(rows, tracks) of each warm user's KNN candidates, by row, each row's in stored order."""
        users = vocabulary_index(context.users, self._arrays["user_vocabulary"])
        warm = np.flatnonzero(users > 0)
        offsets = self._pairing.candidate_offsets
        starts, counts = offsets[users[warm] - 1], offsets[users[warm]] - offsets[users[warm] - 1]
        places = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        rows, tracks = np.repeat(warm, counts).astype(np.int64), self._pairing.candidates[places].astype(np.int64)
        inside = tracks < self.catalog.n_tracks
        return rows[inside], tracks[inside]

    def _session_artists(self, context: Context, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_artist_affinity` kept sparse: (keys, affinity, weight), the row * n_artists + artist of each
        (request, session artist) pair, ascending, its weighted listen time, and (B,) each row's weight."""
        recent = np.maximum(context.recent, 0)
        informed = (users > 0) | ((context.recent >= 0) & self._known[recent]).any(axis=1)
        weight = np.where(informed, self.artist_weight, FALLBACK_ARTIST_WEIGHT).astype(np.float32)
        rows = np.repeat(np.arange(len(users)), recent.shape[1])
        valid = (context.recent >= 0).ravel()
        keys, inverse = np.unique((rows * self.catalog.n_artists + self.catalog.artist[recent].ravel())[valid], return_inverse=True)
        # bincount adds each pair's times in the order _artist_affinity does: the same float32 values.
        affinity = np.bincount(inverse, weights=context.recent_times.ravel()[valid], minlength=len(keys)).astype(np.float32)
        return keys, affinity, weight

    def _forced_artists(self, context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The session artists where the row weighs them, each with its bonus (the weight times the artist's listen time)."""
        users = vocabulary_index(context.users, self._arrays["user_vocabulary"])
        pair_keys, affinity, weight = self._session_artists(context, users)
        n_artists = self.catalog.n_artists
        weighed = (affinity != 0) & (weight[pair_keys // n_artists] > 0)
        rows = pair_keys[weighed] // n_artists
        return rows, pair_keys[weighed] % n_artists, (weight[rows] * affinity[weighed]).astype(np.float32)

    def _forced(self, context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The warm user's KNN candidates, with their bonus: `candidate_boost` plus their artist's session bonus."""
        pool_rows, pool_tracks = self._pool_pairs(context)
        n_artists, n_tracks = self.catalog.n_artists, self.catalog.n_tracks
        keys = np.unique(pool_rows * n_tracks + pool_tracks)  # distinct pairs, by row then track
        rows, tracks = keys // n_tracks, keys % n_tracks
        if not len(rows):
            return rows, tracks, np.zeros(0, np.float32)
        users = vocabulary_index(context.users, self._arrays["user_vocabulary"])
        pair_keys, affinity, weight = self._session_artists(context, users)
        bonus = weight[rows] * lookup(pair_keys, affinity, rows * n_artists + self.catalog.artist[tracks])
        if not np.isinf(self.candidate_boost):
            bonus = bonus + np.float32(self.candidate_boost)
        return rows, tracks, bonus.astype(np.float32)

    def _exclusive(self, context: Context, rows: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """With an infinite `candidate_boost`, a row with a live KNN candidate keeps only its KNN candidates."""
        if not np.isinf(self.candidate_boost) or not len(rows):
            return np.zeros(len(rows), dtype=bool)
        pool_rows, pool_tracks = self._pool_pairs(context)
        return np.isin(rows * self.catalog.n_tracks + tracks, pool_rows * self.catalog.n_tracks + pool_tracks)

    def _serving_scores(self, context: Context) -> np.ndarray:
        scores = super()._serving_scores(context)
        users = vocabulary_index(context.users, self._arrays["user_vocabulary"])
        for row in np.flatnonzero(users > 0):
            pool = self._pairing.candidates_of(int(users[row]) - 1)
            pool = pool[pool < scores.shape[1]]
            if not len(pool) or not np.isfinite(scores[row, pool]).any():
                continue
            if np.isinf(self.candidate_boost):
                restricted = np.full(scores.shape[1], -np.inf, dtype=scores.dtype)
                restricted[pool] = scores[row, pool]
                scores[row] = restricted
            else:
                scores[row, pool] += self.candidate_boost
        return scores

    def candidates_of(self, user: int) -> np.ndarray:
        """The stored candidate tracks of external user id `user` (empty for a cold user)."""
        self._check_fitted()
        index = int(vocabulary_index(np.asarray([user]), self._arrays["user_vocabulary"])[0])
        return self._pairing.candidates_of(index - 1) if index else np.zeros(0, dtype=np.int64)
