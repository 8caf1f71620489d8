"""Serving shared by `tags` and `content`: the nearest unplayed track to what the session liked.

Every catalog track has a row in an item matrix (n_tracks, k), L2-normalised: a tag profile
or a content embedding. A request's query is the normalised sum of the query rows of the
session's liked tracks (the last `history` tracks listened at least `like_threshold`; the
track just played when none was liked). Tracks are scored by cosine with the query, then
served by the rules of `ranking.CatalogScorer` (never a played or unreleased track). A tiny
fixed per-track jitter (below 1e-6) breaks exact ties, which tag profiles have many of,
without favouring low track ids, so brand-new tracks (the highest ids) are not last in line.

With `new_only`, tracks of the initial catalog (release day 0) rank after every released new
track: the cold-start treatments use this to recommend only what nobody could play yesterday.

With `candidates: ivf` (the default of `content`; `tags` stays exact) the cosine plus the
jitter is one inner product, [query, 1] . [item, offset], searched by the inverted file of
`candidates`; the large `new_only` offset sets the new tracks apart in cells of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from contracts.catalog import Catalog
from recommenders.models.artifacts import ArtifactError, join_network, read_metadata, write_artifact
from recommenders.models.config import serving_params
from recommenders.models.content_config import FrameServing
from recommenders.models.ranking import Context, ScoringRecommender

JITTER = 1e-6  # largest tie-breaking offset added to a score
JITTER_SEED = 20_231_123
OLD_TRACK_PENALTY = 1e3  # subtracted from initial-catalog tracks under new_only (scores are cosines)


def normalise_rows(matrix: np.ndarray | sp.spmatrix) -> np.ndarray | sp.csr_matrix:
    """Scale every non-zero row to unit L2 norm (zero rows stay zero), as float32."""
    if sp.issparse(matrix):
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix)
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


class SpaceRecommender(ScoringRecommender):
    """Base of the recommenders that serve the nearest track in a vector space (module docstring).

    Subclasses call `_set_space(items, query_items)` in `_fit` and `_load`. Ids are external
    (catalog) ids. Parameters: see `content_config.FrameServing`.
    """

    config_class: ClassVar[type[Any]] = object
    serving_class: ClassVar[type[FrameServing]] = FrameServing

    def __init__(self, catalog: Catalog, **params: Any) -> None:
        serving = serving_params(self.serving_class, params, self.name)
        super().__init__(catalog)
        self._params = serving
        self.like_threshold = serving.like_threshold
        self.history_length = serving.history
        self.new_only = serving.new_only
        self.candidates, self.n_lists, self.n_probe = serving.candidates, serving.n_lists, serving.n_probe
        self.history: list[dict[str, float]] = []
        self.data: dict[str, Any] = {}
        self._items: np.ndarray | sp.csr_matrix | None = None
        self._query_items: np.ndarray | sp.csr_matrix | None = None
        self._weights: dict[str, np.ndarray] = {}  # the network's, under NET_PREFIX in the artifact
        self._arrays: dict[str, np.ndarray] = {}  # the model's own arrays beside them
        self._offset = np.random.default_rng(JITTER_SEED).random(catalog.n_tracks).astype(np.float32) * JITTER
        if serving.new_only:
            self._offset = self._offset - OLD_TRACK_PENALTY * (catalog.release_day == 0)

    def get_params(self) -> dict[str, Any]:
        return self._params.model_dump()

    def _set_space(self, items: np.ndarray | sp.spmatrix, query_items: np.ndarray | sp.spmatrix | None = None) -> None:
        self._item_offsets: np.ndarray | None = None
        if items.shape[0] != self.catalog.n_tracks:
            raise ValueError(f"{self.name}: the item matrix has {items.shape[0]} rows for a catalog of {self.catalog.n_tracks} tracks")
        self._items = normalise_rows(items)
        self._query_items = self._items if query_items is None else normalise_rows(query_items)
        self._build_index()

    def queries(self, context: Context) -> np.ndarray:
        """(B, k) unit query vectors: the normalised sum of the liked session tracks' query rows."""
        valid = context.recent >= 0
        weights = (valid & (context.recent_times >= self.like_threshold)).astype(np.float32)
        lonely = ~weights.any(axis=1) & valid[:, 0]
        weights[lonely, 0] = 1.0  # no like yet: the track just played stands in
        _, query_items = self._space()
        rows, columns = np.nonzero(weights)
        select = sp.csr_matrix(
            (weights[rows, columns], (rows, context.recent[rows, columns])), shape=(len(weights), self.catalog.n_tracks)
        )
        query = select @ query_items
        return normalise_rows(query.toarray() if sp.issparse(query) else np.asarray(query))

    def _score_all(self, context: Context) -> np.ndarray:
        queries = self.queries(context)
        items, _ = self._space()
        if not sp.issparse(items):  # (B, k) x (k, n_tracks): row-major scores, no transposing copy
            return np.asarray(queries @ items.T, dtype=np.float32) + self._offset[None, :]
        scores = items @ queries.T  # (n_tracks, B)
        scores = np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32).T
        return np.ascontiguousarray(scores + self._offset[None, :])

    def _item_vectors(self) -> np.ndarray:
        """(n_tracks, k + 1) unit item rows and the per-track offset: query . item + offset as one inner product."""
        offsets = getattr(self, "_item_offsets", None)
        if offsets is None or len(offsets) != self.catalog.n_tracks:
            items, _ = self._space()
            dense = items if isinstance(items, np.ndarray) else items.toarray()
            offsets = self._item_offsets = np.ascontiguousarray(np.hstack([np.asarray(dense, np.float32), self._offset[:, None]]))
        return offsets

    def _space(self) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray | sp.csr_matrix]:
        """The unit item rows and query rows that `_set_space` set in `_fit` or `_load`."""
        if self._items is None or self._query_items is None:
            raise RuntimeError(f"{self.name} has no vector space yet: fit or load it first")
        return self._items, self._query_items

    def _query_vectors(self, context: Context) -> np.ndarray:
        queries = self.queries(context)
        return np.hstack([queries, np.ones((len(queries), 1), np.float32)])

    # Artifacts: the network's weights under "net.", the model's own arrays beside them --------

    def _save(self, directory: Path) -> None:
        write_artifact(
            directory, self.name, self.config.model_dump(mode="json"), self.data, join_network(self._weights, self._arrays), self.catalog
        )

    def _read_metadata(self, directory: Path) -> None:
        """Load the artifact's config (checked against this version), training facts and history."""
        metadata = read_metadata(directory, self.name, self.catalog)
        try:
            self.config = self.config_class.model_validate(metadata["config"])
        except ValueError as error:
            raise ArtifactError(f"{directory}: config does not fit this version of {self.name}: {error}") from None
        self.data = metadata["data"]
        self.history = list(self.data.get("history", []))

