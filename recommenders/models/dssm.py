"""`dssm`: a session-aware two-tower recommender, trained with torch and served with numpy.

The item tower embeds every catalog track from its id, artist, observed tags, mean content
frame and popularity prior; the user tower embeds the listener together with the session so
far (the recent tracks weighted by how much of each was heard, the last track). The next
track is the catalog track with the highest dot product, never one already played in the
session.

Cold start: a user unseen in training gets the learned "cold user" embedding (training drops
user ids at random to learn it) and is served from the session alone; a track unseen in
training gets the "cold track" id embedding and is placed by its artist, tags and content.

Serving needs no torch (unless `user_tower: int8`): at load, the item embeddings of the whole catalog (N, D) are computed
once with numpy; with `candidates: exact` a batch of B requests costs one (B, D) x (D, N)
product, with `ivf` (the default) each request scans the `n_probe` inverted-file cells nearest
its user embedding (`candidates`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse

from contracts.catalog import Catalog
from recommenders.models.artifacts import join_network, read_metadata, read_weights, split_network, write_artifact
from recommenders.models.config import DSSMConfig, DSSMServing, serving_params
from recommenders.models.features import TrackInputs, feature_statistics, mean_content, vocabulary_index
from recommenders.models.nn import TrainingError, require_torch
from recommenders.models.ranking import PAD, Context, ScoringRecommender
from recommenders.models.sessions import SessionLog, as_session_log, describe
from recommenders.models.track_tables import MIB, TrackTables

logger = logging.getLogger(__name__)

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default
STAT_KEYS = ("content_mean", "content_std", "popularity_mean", "popularity_std")


def session_examples(log: SessionLog, like_threshold: float, history: int, user_vocabulary: np.ndarray) -> tuple[np.ndarray, Any]:
    """(session of each example, `Examples`): every liked playback after a session's first, with its context."""
    from recommenders.models.nn.dssm import Examples

    rows = np.flatnonzero(log.liked(like_threshold) & (log.position >= 1))
    previous = rows[:, None] - np.arange(1, history + 1)[None, :]
    valid = previous >= log.offsets[log.session[rows]][:, None]
    previous = np.where(valid, previous, 0)
    examples = Examples(
        users=vocabulary_index(log.user[rows], user_vocabulary),
        recent=np.where(valid, log.track[previous], PAD).astype(np.int64),
        times=np.where(valid, log.time[previous], 0.0).astype(np.float32),
        first=log.track[log.offsets[log.session[rows]]].astype(np.int64),
        targets=log.track[rows].astype(np.int64),
    )
    return log.session[rows], examples


def _linear(x: np.ndarray, weights: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    return x @ weights[f"{prefix}.weight"].T + weights[f"{prefix}.bias"]


def _tower(x: np.ndarray, weights: dict[str, np.ndarray], prefix: str, first: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """numpy twin of `nn.dssm.Tower`: Linear, ReLU, Linear, LayerNorm (`first`: another form of the first Linear, e.g. `Int8Linear`)."""
    return _tower_rest(_linear(x, weights, f"{prefix}.0") if first is None else first(x), weights, prefix)


def _tower_rest(first: np.ndarray, weights: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """The tower after its first Linear, from that layer's output: ReLU, Linear, LayerNorm."""
    hidden = np.maximum(first, 0.0)
    out = _linear(hidden, weights, f"{prefix}.2")
    mean = out.mean(axis=-1, keepdims=True)
    var = out.var(axis=-1, keepdims=True)
    normed = (out - mean) / np.sqrt(var + LAYER_NORM_EPS)
    return (normed * weights[f"{prefix}.3.weight"] + weights[f"{prefix}.3.bias"]).astype(np.float32)


def _track_features(inputs: TrackInputs, weights: dict[str, np.ndarray]) -> np.ndarray:
    """numpy twin of `nn.dssm.TrackEncoder` for every catalog track: (N, F)."""
    tags = inputs.tags
    count = np.maximum((tags > 0).sum(axis=1, keepdims=True), 1)
    tag_weight = weights["tracks.tags.weight"].copy()
    tag_weight[0] = 0.0
    parts = [
        weights["tracks.ids.weight"][inputs.track_index],
        weights["tracks.artists.weight"][inputs.artist_index],
        tag_weight[tags].sum(axis=1) / count,
    ]
    if "tracks.content.weight" in weights:
        parts.append(_linear(inputs.content, weights, "tracks.content"))
    parts.append(inputs.popularity)
    return np.concatenate(parts, axis=1).astype(np.float32)


class DSSMRecommender(ScoringRecommender):
    """Two-tower DSSM over users, sessions and track metadata (see the module docstring).

    Parameters (serving, from the experiment config): `artist_penalty` (default 0.5), subtracted
    from a track's score for each earlier play of its artist in the session; `candidates`,
    `n_lists`, `n_probe` (see `config.CandidateServing`); `user_tower` (default "table"): how the
    user tower's first layer, most of a request's arithmetic, runs. "table" sums per-track rows
    of that layer, computed on first use and cached up to `table_mb` MiB (`track_tables`),
    float32's answers up to rounding; "float32" is one dense product per batch; "int8" runs it in
    8-bit integers (`int8.Int8Linear`, needs torch), with answers that differ from float32
    serving in a few percent of requests (docs/learned.md).
    """

    name = "dssm"
    config_class = DSSMConfig

    def __init__(self, catalog: Catalog, **params: Any) -> None:
        serving = serving_params(DSSMServing, params, self.name)
        super().__init__(catalog)
        self._params = serving
        self.artist_penalty = serving.artist_penalty
        self.candidates, self.n_lists, self.n_probe = serving.candidates, serving.n_lists, serving.n_probe
        self.user_tower, self.table_mb = serving.user_tower, serving.table_mb
        self._first_layer: Callable[[np.ndarray], np.ndarray] | None = None
        self._tables: TrackTables | None = None
        self.config = DSSMConfig()
        self.history: list[dict[str, float]] = []
        self.data: dict[str, Any] = {}
        self._weights: dict[str, np.ndarray] = {}
        self._arrays: dict[str, np.ndarray] = {}

    def get_params(self) -> dict[str, Any]:
        return self._params.model_dump()

    # Training -----------------------------------------------------------------------------

    def _fit(self, events: pd.DataFrame | SessionLog, config: DSSMConfig | None = None, device: str = "cpu", progress: bool = False, **options: Any) -> None:
        """Train on `events` (a DataFrame of the log's columns, or a `SessionLog`)."""
        if options:
            raise TypeError(f"dssm.fit got unknown option(s): {', '.join(sorted(options))}")
        require_torch()
        from recommenders.models.nn.dssm import train_dssm

        config = config or DSSMConfig()
        started = time.perf_counter()
        log = as_session_log(events, self.catalog.n_tracks)
        if log.n_sessions < 2:
            raise TrainingError(f"dssm needs at least 2 sessions to train and validate, the log has {log.n_sessions}")
        user_vocabulary = np.unique(log.user)
        plays = np.bincount(log.track, minlength=self.catalog.n_tracks)
        track_vocabulary = np.flatnonzero(plays >= config.min_track_count).astype(np.int64)
        content = mean_content(self.catalog)
        stats = feature_statistics(self.catalog, content)
        inputs = TrackInputs.build(self.catalog, track_vocabulary, self.catalog.n_artists, self.catalog.n_tags, stats, content)
        sessions, examples = session_examples(log, config.like_threshold, config.history, user_vocabulary)
        n_validation = max(int(round(log.n_sessions * config.validation_fraction)), 1)
        validation = sessions >= log.n_sessions - n_validation  # sessions are ordered by start: the latest validate
        weights, history = train_dssm(
            inputs,
            n_users=len(user_vocabulary),
            n_ids=len(track_vocabulary),
            n_artists=self.catalog.n_artists,
            n_tags=self.catalog.n_tags,
            train=examples.subset(np.flatnonzero(~validation)),
            validation=examples.subset(np.flatnonzero(validation)),
            config=config,
            device=device,
            progress=progress,
        )
        self.config = config
        self.history = history
        self.data = {
            **describe(log),
            "examples": len(examples),
            "validation_examples": int(validation.sum()),
            "n_tracks": self.catalog.n_tracks,
            "n_artists": self.catalog.n_artists,
            "n_tags": self.catalog.n_tags,
            "seconds": time.perf_counter() - started,
            "history": history,
        }
        self._weights = weights
        self._arrays = {"user_vocabulary": user_vocabulary, "track_vocabulary": track_vocabulary, **stats}
        self._prepare(content)

    # Artifacts ----------------------------------------------------------------------------

    def _save(self, directory: Path) -> None:
        write_artifact(directory, self.name, self.config.model_dump(), self.data, join_network(self._weights, self._arrays), self.catalog)

    def _load(self, directory: Path) -> None:
        metadata = read_metadata(directory, self.name, self.catalog)
        try:
            self.config = DSSMConfig.model_validate(metadata["config"])
        except ValueError as error:
            raise TypeError(f"{directory}: config does not fit this version of dssm: {error}") from None
        self.data = metadata["data"]
        self.history = list(self.data.get("history", []))
        self._weights, self._arrays = split_network(read_weights(directory))
        self._prepare(None)

    def _prepare(self, content: np.ndarray | None) -> None:
        """Precompute the serving tables: track features (N, F) and item embeddings (N, D)."""
        stats = {key: self._arrays[key] for key in STAT_KEYS}
        inputs = TrackInputs.build(
            self.catalog,
            self._arrays["track_vocabulary"],
            int(self.data["n_artists"]),
            int(self.data["n_tags"]),
            stats,
            content if self.config.content_features else np.zeros((self.catalog.n_tracks, self.catalog.frame_dim), np.float32),
        )
        self.history_length = self.config.history
        self._features = _track_features(inputs, self._weights)
        self._items = np.ascontiguousarray(_tower(self._features, self._weights, "item_tower"))
        self._scale = np.float32(1.0 / np.sqrt(self.config.embedding_dim))
        self._first_layer, self._tables = None, None
        if self.user_tower == "table":
            self._tables = TrackTables(
                self._weights["user_tower.0.weight"],
                self._weights["user_tower.0.bias"],
                self._features,
                self._weights["users.weight"],
                max_bytes=self.table_mb * MIB,
            )
        if self.user_tower == "int8":
            from recommenders.models.int8 import Int8Linear

            self._first_layer = Int8Linear(self._weights["user_tower.0.weight"], self._weights["user_tower.0.bias"])
        self._build_index()

    # Serving ------------------------------------------------------------------------------

    def user_embeddings(self, context: Context) -> np.ndarray:
        """(B, D) user-tower outputs for a batch: the numpy twin of `DSSMNet.encode_users`."""
        users = vocabulary_index(context.users, self._arrays["user_vocabulary"])
        valid = (context.recent >= 0).astype(np.float32)
        liked = context.recent_times * valid
        skipped = (1.0 - context.recent_times) * valid
        if self._tables is not None:
            return self._table_embeddings(context, users, valid, liked, skipped)
        liked_sum, skipped_sum, last = self._weighted_features(np.maximum(context.recent, 0), liked, skipped)
        liked_mean = liked_sum / np.maximum(liked.sum(1, keepdims=True), 1e-6)
        skipped_mean = skipped_sum / np.maximum(skipped.sum(1, keepdims=True), 1e-6)
        last *= valid[:, :1]
        opening = self._features[np.maximum(context.first, 0)] * (context.first >= 0)[:, None]
        inputs = np.concatenate(
            [self._weights["users.weight"][users], liked_mean, skipped_mean, last, opening, context.recent_times[:, :1] * valid[:, :1]], axis=1
        )
        return _tower(inputs.astype(np.float32, copy=False), self._weights, "user_tower", self._first_layer)

    def _table_embeddings(self, context: Context, users: np.ndarray, valid: np.ndarray, liked: np.ndarray, skipped: np.ndarray) -> np.ndarray:
        """`user_embeddings` with the first layer read from `TrackTables`: the same inputs, as weights on table rows."""
        assert self._tables is not None
        recent = np.maximum(context.recent, 0)
        blocks = [
            (recent, liked / np.maximum(liked.sum(1, keepdims=True), 1e-6)),
            (recent, skipped / np.maximum(skipped.sum(1, keepdims=True), 1e-6)),
            (recent[:, :1], valid[:, :1]),
            (np.maximum(context.first, 0)[:, None], (context.first >= 0)[:, None].astype(np.float32)),
        ]
        first = self._tables(users, blocks, context.recent_times[:, 0] * valid[:, 0])
        return _tower_rest(first, self._weights, "user_tower")

    def _weighted_features(self, recent: np.ndarray, liked: np.ndarray, skipped: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, F) sums of the recent tracks' features weighted by `liked` and by `skipped` (B, L), and the newest track's features.

        One sparse (2B, N) x (N, F) product: each row holds its L weights at its tracks' columns,
        in history order, so the sums add the positions in order, as
        `(weights[..., None] * features).sum(1)` does, and the values are the same (tests
        compare). A dense (B, L, F) gather of the whole history is tens of MB per batch.
        """
        batch, length = recent.shape
        weights = np.concatenate([liked, skipped]).astype(np.float32, copy=False).ravel()
        columns = np.concatenate([recent, recent]).ravel()
        rows = scipy.sparse.csr_matrix((weights, columns, np.arange(0, 2 * batch * length + 1, length)), shape=(2 * batch, len(self._features)))
        sums = np.asarray(rows @ self._features, dtype=np.float32)
        return sums[:batch], sums[batch:], self._features[recent[:, 0]]

    def _score_all(self, context: Context) -> np.ndarray:
        return (self.user_embeddings(context) @ self._items.T) * self._scale

    def _item_vectors(self) -> np.ndarray:
        return self._items

    def _query_vectors(self, context: Context) -> np.ndarray:
        return self.user_embeddings(context) * self._scale

    @property
    def item_embeddings(self) -> np.ndarray:
        """(N, D) item-tower outputs of every catalog track (read-only)."""
        view = self._items.view()
        view.flags.writeable = False
        return view
