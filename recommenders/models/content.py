"""`content`: the unplayed track whose content lies nearest to the behaviour of the session's likes.

Training (`recommenders train content`) fits the contrastive two-tower of `nn.content` on the
event log: behaviour vectors of the warm tracks (co-listening by default, or a trained
`dssm` / `bpr_knn` artifact's item embeddings) paired with their content frames. Serving
scores every catalog track by the cosine between its content embedding and the query (the
normalised sum of the liked session tracks' query rows: the behaviour embedding of a warm
track when training found that side better on its validation tracks, otherwise the content
embedding, which is also what tracks without plays use), so tracks with zero plays are
candidates like any other (`space.SpaceRecommender`).

Artifact (`model.json` + `weights.npz`): `items` (n_tracks, e) content embeddings,
`queries` (n_tracks, e) the query side, `warm` / `test` catalog ids, and the network as
`net.*` arrays. Serving needs numpy only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from contracts.catalog import Catalog
from recommenders.models.artifacts import ArtifactError, read_weights
from recommenders.models.colisten import behaviour_vectors, co_listening
from recommenders.models.content_config import ContentModelConfig
from recommenders.models.nn import TrainingError, require_torch
from recommenders.models.sessions import SessionLog, as_session_log, describe
from recommenders.models.space import SpaceRecommender

ARRAYS = ("items", "queries", "warm", "test")


def model_behaviour(catalog: Catalog, source: str, artifact: str, tracks: np.ndarray) -> np.ndarray:
    """Item embeddings of `tracks` from a trained `dssm` or `bpr_knn` artifact, (len, D) float32."""
    if source == "dssm":
        from recommenders.models.dssm import DSSMRecommender

        return np.asarray(DSSMRecommender(catalog).load(artifact).item_embeddings[tracks], dtype=np.float32)
    from recommenders.models.bpr_knn import BPRKNNRecommender

    return np.asarray(BPRKNNRecommender(catalog).load(artifact)._items[tracks], dtype=np.float32)


class ContentRecommender(SpaceRecommender):
    """Nearest content to the session's liked tracks in the contrastive space (see the module docstring).

    Parameters: `like_threshold`, `history`, `new_only` (see `FrameServing`).
    """

    name = "content"
    config_class: ClassVar[type] = ContentModelConfig

    def __init__(self, catalog: Catalog, **params: Any) -> None:
        super().__init__(catalog, **params)
        self.config = ContentModelConfig()

    def _fit(self, events: Any, config: ContentModelConfig | None = None, device: str = "cpu", progress: bool = False, **options: Any) -> None:
        """Train on `events` (a `SessionLog` or a DataFrame of the log's columns)."""
        if options:
            raise TypeError(f"content.fit got unknown option(s): {', '.join(sorted(options))}")
        require_torch()
        from recommenders.models.nn.content import train_content

        config = config or ContentModelConfig()
        started = time.perf_counter()
        log = as_session_log(events, self.catalog.n_tracks)
        colisten = co_listening(log, self.catalog.n_tracks, like_threshold=config.like_threshold, min_likes=config.min_likes)
        if len(colisten) < 3:
            raise TrainingError(f"only {len(colisten)} tracks were liked by at least {config.min_likes} listeners: the log is too small")
        if config.behaviour == "colisten":
            warm_rows, behaviour = behaviour_vectors(colisten, config.behaviour_dim, seed=config.seed)
        else:
            warm_rows = np.arange(len(colisten))
            try:
                behaviour = model_behaviour(self.catalog, config.behaviour, str(config.behaviour_artifact), colisten.tracks)
            except (OSError, ValueError) as error:
                raise TrainingError(f"cannot read the {config.behaviour} artifact {config.behaviour_artifact}: {error}") from None
        trained = train_content(self.catalog, colisten, warm_rows, behaviour, config, device=device, progress=progress)
        queries = trained.items.copy()
        if trained.metrics["query"] == "behaviour":  # otherwise warm tracks query with their content too
            queries[trained.warm] = trained.behaviour
        self.config = config
        self.history = trained.history
        self._weights = trained.weights
        self._arrays = {"items": trained.items, "queries": queries, "warm": trained.warm, "test": trained.test}
        self.data = {
            **(describe(log) if isinstance(log, SessionLog) else {}),
            "metrics": trained.metrics,
            "history": trained.history,
            "n_tracks": self.catalog.n_tracks,
            "seconds": time.perf_counter() - started,
        }
        self._set_space(trained.items, queries)

    def _load(self, directory: Path) -> None:
        self._read_metadata(directory)
        arrays = read_weights(directory, ARRAYS)
        if arrays["items"].shape[0] != self.catalog.n_tracks:
            raise ArtifactError(
                f"{directory} embeds {arrays['items'].shape[0]} tracks but the catalog has {self.catalog.n_tracks}: "
                "retrain the content model on this world"
            )
        self._arrays = arrays
        self._set_space(arrays["items"], arrays["queries"])

    @property
    def metrics(self) -> dict[str, Any]:
        """Held-out retrieval metrics of the trained model and of the mean-frame baseline."""
        return dict(self.data.get("metrics", {}))
