"""What the sequential recommenders (`sasrec`, `hstu`) share: the session windows, training, artifacts and serving.

Training cuts every session of the log into left-padded windows of `history + 1` plays; each
play after the first is a target weighted by the fraction heard (`targets: heard`; with
`liked`, a target of weight 1 when listened at least `like_threshold`), and every play, liked
or skipped, is input with its listen fraction. The latest sessions validate.

Serving reads the request's session (`Request.history`, `Request.times`, the current track
with `Request.time`), runs one forward pass per chunk of requests and scores every catalog
track by the dot product of the last position's state with the track's embedding; the
serving rules of `CatalogScorer` then drop played and unreleased tracks. Serving needs torch
(the `ml` extra), unlike `dssm`: the network runs as trained, in inference mode on one thread.

Cold start: a user is only their session, so a listener unseen in training is served like
any other; a track is placed by its tags, content and popularity (and, where configured, its
artist and a small random id embedding that training never moved).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from contracts.catalog import Catalog
from recommenders.models.artifacts import join_network, read_metadata, read_weights, split_network, write_artifact
from recommenders.models.config import SequentialConfig, SequentialServing, serving_params
from recommenders.models.features import TrackInputs, feature_statistics, mean_content
from recommenders.models.nn import TrainingError, require_torch
from recommenders.models.ranking import Context, ScoringRecommender
from recommenders.models.sessions import SessionLog, as_session_log, describe

# What an artifact written before these keys existed was trained with (their defaults have changed since).
EARLIER_DEFAULTS: dict[str, Any] = {
    "targets": "liked", "artist_embedding": True, "track_ids": True, "in_batch_negatives": False, "sampled_negatives": 256,
}


def repeated_artists(log: SessionLog, artist: np.ndarray) -> np.ndarray:
    """(n,) bool: the play's artist was already played earlier in its session."""
    key = log.session.astype(np.int64) * (int(artist.max()) + 1) + artist[log.track]
    _, first = np.unique(key, return_index=True)
    repeated = np.ones(len(key), dtype=bool)
    repeated[first] = False
    return repeated


def session_windows(
    log: SessionLog, history: int, like_threshold: float, artist: np.ndarray | None = None, repeat_weight: float = 0.0, heard: bool = False
) -> tuple[np.ndarray, Any]:
    """(session of each window, `Sequences`): every session of two or more plays, cut from its end
    into windows of `history + 1` plays that overlap by one, so each target is counted once.

    A liked play is a target of weight 1; with `heard`, every play is a target weighted by the
    fraction heard instead. With `artist` (each track's artist), a target whose artist was
    already played in the session weighs `repeat_weight` times as much (0: input only), which
    undoes part of what a sticky logging policy taught the log.
    """
    from recommenders.models.nn.sequential import Sequences

    width = history + 1
    starts: list[int] = []
    stops: list[int] = []
    owners: list[int] = []
    for session, (first, last) in enumerate(zip(log.offsets[:-1], log.offsets[1:], strict=True)):
        stop = int(last)
        while stop - first >= 2:
            starts.append(max(int(first), stop - width))
            stops.append(stop)
            owners.append(session)
            stop -= history
    n = len(starts)
    tokens = np.zeros((n, width), dtype=np.int64)
    times = np.zeros((n, width), dtype=np.float32)
    for row, (start, stop) in enumerate(zip(starts, stops, strict=True)):
        length = stop - start
        tokens[row, width - length :] = log.track[start:stop] + 1
        times[row, width - length :] = log.time[start:stop]
    target = times.copy() if heard else (times >= like_threshold).astype(np.float32)
    if artist is not None:
        repeated = repeated_artists(log, artist)
        for row, (start, stop) in enumerate(zip(starts, stops, strict=True)):
            target[row, width - (stop - start) :] *= np.where(repeated[start:stop], np.float32(repeat_weight), np.float32(1.0))
    weights = np.where(tokens[:, :-1] > 0, target[:, 1:], np.float32(0.0)).astype(np.float32)  # a target needs a play before it
    return np.asarray(owners, dtype=np.int64), Sequences(tokens, times, weights)


def serve_inputs_from_table(net: Any, catalog: Any) -> None:
    """Make the serving network read its input item vectors from `catalog` (N, D) instead of recomputing them.

    A trained network's item vector is a fixed function of the token (id, artist, tags,
    content and popularity embeddings summed), and `catalog` holds it for every track: the
    forward pass then gathers one row per position instead of five embeddings, a tag mean and
    a content projection per position, which were a third of a batch's forward time. Row 0
    (padding) is zeros, as the network makes it. The values are the network's own, bit for
    bit (tests compare); only this serving copy of the network is changed, never one that trains.
    """
    import torch

    table = torch.cat([torch.zeros(1, catalog.shape[1], dtype=catalog.dtype), catalog])
    net.item_vectors = table.__getitem__  # an instance attribute: shadows SequenceNet.item_vectors


class SequentialRecommender(ScoringRecommender):
    """A causal transformer over the session (see the module docstring); subclasses name the network.

    Parameters (serving, from the experiment config): `artist_penalty` (default 0), subtracted
    from a track's score for each earlier play of its artist in the session.
    """

    config_class: ClassVar[type[SequentialConfig]] = SequentialConfig

    def __init__(self, catalog: Catalog, **params: Any) -> None:
        serving = serving_params(SequentialServing, params, self.name)
        super().__init__(catalog)
        self._params = serving
        self.artist_penalty = serving.artist_penalty
        self.candidates, self.n_lists, self.n_probe = serving.candidates, serving.n_lists, serving.n_probe
        self.config = self.config_class()
        self.history: list[dict[str, float]] = []
        self.data: dict[str, Any] = {}
        self._weights: dict[str, np.ndarray] = {}
        self._net: Any = None
        self._stats: dict[str, np.ndarray] = {}

    def get_params(self) -> dict[str, Any]:
        return self._params.model_dump()

    def _build(self, tracks: Any, config: SequentialConfig) -> Any:
        """The torch network of this model over the catalog's `TrackTables`."""
        raise NotImplementedError

    def _tables(self, n_artists: int, n_tags: int, content: np.ndarray | None = None) -> Any:
        """The catalog's `TrackTables` under the feature statistics in `self._stats` (`content`: `mean_content`, if at hand)."""
        from recommenders.models.nn.sequential import TrackTables

        inputs = TrackInputs.build(self.catalog, np.arange(self.catalog.n_tracks), n_artists, n_tags, self._stats, content)
        return TrackTables(inputs.artist_index, inputs.tags, inputs.content, inputs.popularity, n_artists, n_tags)

    # Training -----------------------------------------------------------------------------

    def _fit(
        self, events: pd.DataFrame | SessionLog, config: SequentialConfig | None = None, device: str = "cpu", progress: bool = False, **options: Any
    ) -> None:
        """Train on `events` (a DataFrame of the log's columns, or a `SessionLog`)."""
        if options:
            raise TypeError(f"{self.name}.fit got unknown option(s): {', '.join(sorted(options))}")
        require_torch()
        from recommenders.models.nn.sequential import build_and_train

        config = config or self.config_class()
        started = time.perf_counter()
        log = as_session_log(events, self.catalog.n_tracks)
        if log.n_sessions < 2:
            raise TrainingError(f"{self.name} needs at least 2 sessions to train and validate, the log has {log.n_sessions}")
        repeat_weight = config.repeat_target_weight if config.artist_repeat_targets else 0.0
        artist = None if repeat_weight == 1.0 else self.catalog.artist
        sessions, windows = session_windows(log, config.history, config.like_threshold, artist, repeat_weight, config.targets == "heard")
        n_validation = max(int(round(log.n_sessions * config.validation_fraction)), 1)
        validation = sessions >= log.n_sessions - n_validation  # sessions are ordered by start: the latest validate
        n_tracks = self.catalog.n_tracks
        content = mean_content(self.catalog)
        self._stats = feature_statistics(self.catalog, content)
        tables = self._tables(self.catalog.n_artists, self.catalog.n_tags, content)
        weights, history = build_and_train(
            lambda: self._build(tables, config), self.name, n_tracks,
            windows.subset(np.flatnonzero(~validation)), windows.subset(np.flatnonzero(validation)), config, device, progress,
        )
        self.config = config
        self.history = history
        self.data = {
            **describe(log),
            "windows": len(windows),
            "targets": windows.targets,
            "validation_targets": windows.subset(np.flatnonzero(validation)).targets,
            "n_tracks": n_tracks,
            "n_artists": self.catalog.n_artists,
            "n_tags": self.catalog.n_tags,
            "seconds": time.perf_counter() - started,
            "history": history,
        }
        self._set_weights(weights, tables)

    # Artifacts ----------------------------------------------------------------------------

    def _save(self, directory: Path) -> None:
        write_artifact(directory, self.name, self.config.model_dump(), self.data, join_network(self._weights, self._stats), self.catalog)

    def _load(self, directory: Path) -> None:
        metadata = read_metadata(directory, self.name, self.catalog)
        try:
            self.config = self.config_class.model_validate({**EARLIER_DEFAULTS, **metadata["config"]})
        except ValueError as error:
            raise TypeError(f"{directory}: config does not fit this version of {self.name}: {error}") from None
        self.data = metadata["data"]
        if int(self.data.get("n_tracks", -1)) != self.catalog.n_tracks:
            raise TypeError(f"{directory}: trained on a catalog of {self.data.get('n_tracks')} tracks, this one has {self.catalog.n_tracks}")
        self.history = list(self.data.get("history", []))
        weights, self._stats = split_network(read_weights(directory))
        self._set_weights(weights, self._tables(int(self.data["n_artists"]), int(self.data["n_tags"])))

    def _set_weights(self, weights: dict[str, np.ndarray], tables: Any) -> None:
        """Keep `weights` and rebuild the network over `tables` from them, in inference mode."""
        torch = require_torch()
        self._weights = weights
        with torch.random.fork_rng(devices=[]):  # building initialises weights that are replaced: leave the global RNG alone
            net = self._build(tables, self.config)
        try:
            net.load_state_dict({name: torch.from_numpy(np.asarray(value)) for name, value in weights.items()})
        except RuntimeError as error:
            raise TypeError(f"{self.name}: the weights do not fit the network of the config: {error}") from None
        self._net = net.eval()
        with torch.inference_mode():
            self._catalog = net.catalog()  # (N, D), fixed once trained: computed once for serving
        serve_inputs_from_table(net, self._catalog)
        self.history_length = self.config.history
        self._build_index()

    # Serving ------------------------------------------------------------------------------

    def _item_vectors(self) -> np.ndarray:
        return self._catalog.numpy()

    def _query_vectors(self, context: Context) -> np.ndarray:
        """(B, D) the last position's state: one forward pass over the batch's sessions, newest play last."""
        import torch

        from recommenders.models.nn.training import cpu_threads

        tokens = np.ascontiguousarray(context.recent[:, ::-1] + 1)  # PAD (-1) becomes token 0
        times = np.ascontiguousarray(context.recent_times[:, ::-1])
        with cpu_threads(1), torch.inference_mode():
            return self._net.last_state(torch.from_numpy(tokens), torch.from_numpy(times)).numpy().astype(np.float32, copy=True)

    def _score_all(self, context: Context) -> np.ndarray:
        """(B, N) scores: one forward pass over the batch's sessions, newest play last."""
        import torch

        from recommenders.models.nn.training import cpu_threads

        tokens = np.ascontiguousarray(context.recent[:, ::-1] + 1)  # PAD (-1) becomes token 0
        times = np.ascontiguousarray(context.recent_times[:, ::-1])
        with cpu_threads(1), torch.inference_mode():
            scores = self._net.score_last(torch.from_numpy(tokens), torch.from_numpy(times), self._catalog)
        return scores.numpy().astype(np.float32, copy=True)
