"""`tags`: the unplayed track whose tag profile is closest to what the session liked.

A track's tags are its observed tags or, for a track without any (a quarter of the world's
catalog, and every new release that came without labels), the tags the trained tag model
assigns from its content frames by the dynamic-threshold rule (`selection.assign_tags`:
0.55, then lower steps until the track has a tag). Profiles are binary tag vectors weighted
by inverse document frequency (rare tags say more) and L2-normalised; serving is one sparse
product per batch (`space.SpaceRecommender`).

Training (`recommenders train tags`) fits the tag model of `nn.tags` on the catalog's
labelled tracks; the event log is not used. Serving needs numpy only: the artifact carries
the predicted tags of every unlabelled track (`weights.npz`: `predicted_tracks`,
`predicted_indptr`, `predicted_indices`; the network as `net.*` arrays; the split as
`split_*`). An artifact of another world is refused at load; one that records no world (older)
and was fitted on another catalog is re-predicted at load, which needs torch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from contracts.catalog import Catalog
from recommenders.models.artifacts import WEIGHTS_FILE, ArtifactError, read_weights, split_network
from recommenders.models.content_config import TagModelConfig, TagServing
from recommenders.models.nn import require_torch
from recommenders.models.sessions import SessionLog, describe
from recommenders.models.space import SpaceRecommender

logger = logging.getLogger(__name__)

PREDICTED = ("predicted_tracks", "predicted_indptr", "predicted_indices")
SPLITS = ("train", "val", "test")


def catalog_layout(catalog: Catalog) -> str:
    """A short hash of the catalog's size, frame lengths and observed tags: do the artifact's
    per-track arrays fit it? (Not the world's identity: that is `Catalog.fingerprint`.)"""
    digest = hashlib.sha1()
    digest.update(np.int64(catalog.n_tracks).tobytes())
    digest.update(np.ascontiguousarray(catalog.frame_lengths(), dtype=np.int64).tobytes())
    matrix = catalog.tag_matrix()
    digest.update(np.ascontiguousarray(matrix.indptr, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def idf_weights(tags: sp.csr_matrix) -> np.ndarray:
    """Smoothed inverse document frequency per tag: log((1 + n) / (1 + df)) + 1."""
    n = tags.shape[0]
    df = np.bincount(tags.indices, minlength=tags.shape[1])
    return (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)


def merged_tags(catalog: Catalog, predicted: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> sp.csr_matrix:
    """Observed tags, with the predicted ones (tracks, CSR indptr, indices) filling tracks that have none."""
    observed = catalog.tag_matrix().tocsr()
    if predicted is None:
        return observed
    tracks, indptr, indices = predicted
    if len(tracks) and (tracks.max() >= catalog.n_tracks or tracks.min() < 0):
        raise ArtifactError("predicted tags name tracks outside this catalog")
    empty = np.diff(observed.indptr) == 0
    counts = np.diff(indptr)
    rows = np.repeat(tracks, counts)
    keep = np.repeat(empty[tracks], counts)
    extra = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], indices[keep].astype(np.int64))), shape=observed.shape)
    merged = (observed + extra).tocsr()
    merged.data[:] = 1.0
    return merged


class TagRecommender(SpaceRecommender):
    """Nearest tag profile to the session's liked tracks (see the module docstring).

    Parameters: `like_threshold`, `history`, `new_only` (see `FrameServing`) and `predicted`
    (default True; False serves observed tags only, the baseline that cannot place unlabelled tracks).
    """

    name = "tags"
    config_class: ClassVar[type] = TagModelConfig
    serving_class: ClassVar[type[TagServing]] = TagServing

    def __init__(self, catalog: Catalog, **params: Any) -> None:
        super().__init__(catalog, **params)
        self.use_predicted = self._params.predicted  # type: ignore[attr-defined]
        self.config = TagModelConfig()
        self.tags: sp.csr_matrix | None = None

    # Training -----------------------------------------------------------------------------

    def _fit(self, events: Any = None, config: TagModelConfig | None = None, device: str = "cpu", progress: bool = False, **options: Any) -> None:
        """Train the tag model on the catalog (the log only dates the artifact) and predict unlabelled tracks."""
        if options:
            raise TypeError(f"tags.fit got unknown option(s): {', '.join(sorted(options))}")
        require_torch()
        from recommenders.models.nn.tags import predict_tracks, train_tags

        config = config or TagModelConfig()
        started = time.perf_counter()
        trained = train_tags(self.catalog, config, device=device, progress=progress)
        unlabelled = np.flatnonzero(np.diff(self.catalog.tag_matrix().indptr) == 0).astype(np.int64)
        indptr, indices = predict_tracks(trained.weights, self.catalog, unlabelled, config, device=device)
        self.config = config
        self.history = trained.history
        self._weights = trained.weights
        self._arrays = {
            "predicted_tracks": unlabelled,
            "predicted_indptr": indptr,
            "predicted_indices": indices,
            **{f"split_{name}": rows for name, rows in trained.split.items()},
        }
        self.data = {
            **(describe(events) if isinstance(events, SessionLog) else {}),
            "metrics": trained.metrics,
            "history": trained.history,
            "n_tracks": self.catalog.n_tracks,
            "frame_dim": self.catalog.frame_dim,
            "tag_names": list(self.catalog.tag_names),
            "catalog_layout": catalog_layout(self.catalog),
            "seconds": time.perf_counter() - started,
        }
        self._build()

    # Artifacts ----------------------------------------------------------------------------

    def _load(self, directory: Path) -> None:
        self._read_metadata(directory)
        if len(self.data.get("tag_names", [])) != self.catalog.n_tags:
            raise ArtifactError(f"{directory}: the tag model knows {len(self.data.get('tag_names', []))} tags, the catalog {self.catalog.n_tags}")
        self._weights, self._arrays = split_network(read_weights(directory))
        missing = [name for name in PREDICTED if name not in self._arrays]
        if missing:
            raise ArtifactError(f"{directory / WEIGHTS_FILE} lacks array(s) {', '.join(missing)}")
        # Artifacts written before the key was renamed call it catalog_fingerprint.
        if self.data.get("catalog_layout", self.data.get("catalog_fingerprint")) != catalog_layout(self.catalog):
            logger.warning("%s was trained on another catalog: predicting the tags of this one (needs torch)", directory)
            require_torch()
            from recommenders.models.nn.tags import predict_tracks

            unlabelled = np.flatnonzero(np.diff(self.catalog.tag_matrix().indptr) == 0).astype(np.int64)
            indptr, indices = predict_tracks(self._weights, self.catalog, unlabelled, self.config)
            self._arrays.update(predicted_tracks=unlabelled, predicted_indptr=indptr, predicted_indices=indices)
        self._build()

    def _build(self) -> None:
        predicted = tuple(self._arrays[name] for name in PREDICTED) if self.use_predicted else None
        self.tags = merged_tags(self.catalog, predicted)  # type: ignore[arg-type]
        self._set_space(self.tags @ sp.diags(idf_weights(self.tags)))

    # Introspection --------------------------------------------------------------------------

    @property
    def metrics(self) -> dict[str, Any]:
        """Test metrics of the trained tag model (macro AP, baseline, assignment precision/recall)."""
        return dict(self.data.get("metrics", {}))

    def split(self, name: str) -> np.ndarray:
        """Catalog ids of the tag model's "train", "val" or "test" tracks."""
        if name not in SPLITS:
            raise ValueError(f"split == {name!r}, must be one of {', '.join(SPLITS)}")
        return self._arrays[f"split_{name}"]

    def tag_scores(self, tracks: np.ndarray, device: str = "cpu") -> np.ndarray:
        """Predicted tag probabilities of `tracks` (catalog ids), (len, n_tags); needs torch."""
        require_torch()
        from recommenders.models.frame_store import FrameStore
        from recommenders.models.nn.tags import load_net, predict_proba
        from recommenders.models.nn.training import resolve_device

        target = resolve_device(device)
        net = load_net(self._weights, self.catalog.frame_dim, self.catalog.n_tags, self.config).to(target)
        return predict_proba(net, FrameStore.from_catalog(self.catalog, np.asarray(tracks, dtype=np.int64)), target, self.config)
