"""What the recommender and track pages show, as JSON-ready dicts, through the models' public APIs.

Artifacts are directories with a `model.json` under `--artifacts` (`recommenders train NAME --out
DIR` writes them). Models are loaded once, on first use, with `recommenders.registry.make`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contracts.catalog import Catalog
from recommenders.base import Request
from recommenders.evaluation.report import read_saved
from recommenders.models.artifacts import METADATA_FILE, ArtifactError, read_metadata
from recommenders.models.selection import DEFAULT_THRESHOLDS, assign_tags

TAG_MODEL = "tags"  # registry name of the model whose probabilities the tag chart shows
NEIGHBOURS = 10  # tracks listed per model


class LensError(ValueError):
    """A request the pages cannot answer (unknown track, no artifacts); shown as one line."""


def _number(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@dataclass
class Lab:
    """The catalog, the artifacts found and, when given, the hidden world's directory.

    Attributes:
        catalog: The public catalog the models were trained on.
        artifacts: Artifact directory name -> its directory (each holds a `model.json`).
        world: World directory for the true tags (None: they are not shown).
    """

    catalog: Catalog
    artifacts: dict[str, Path]
    world: Path | None = None
    _models: dict[str, Any] = field(default_factory=dict)
    _true_tags: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, artifacts: Path | None, catalog_dir: Path, world: Path | None = None) -> Lab:
        """The lab of `artifacts` (every subdirectory with a model.json, or the directory itself)."""
        found: dict[str, Path] = {}
        if artifacts is not None:
            if not artifacts.is_dir():
                raise LensError(f"--artifacts {artifacts} is not a directory")
            candidates = [artifacts] if (artifacts / METADATA_FILE).is_file() else sorted(p for p in artifacts.iterdir() if p.is_dir())
            found = {p.name: p for p in candidates if (p / METADATA_FILE).is_file()}
        return cls(Catalog(catalog_dir), found, world)

    def model(self, name: str) -> Any:
        """The loaded recommender of artifact `name` (loaded once, then kept)."""
        from recommenders.registry import make

        with self._lock:
            if name not in self._models:
                metadata = read_metadata(self.artifacts[name])
                self._models[name] = make(metadata["model"], self.catalog, artifact=self.artifacts[name])
            return self._models[name]

    def check_track(self, track: int) -> None:
        """Raise LensError unless `track` is a catalog id."""
        if not self.catalog.contains(track):
            raise LensError(f"track == {track}, must be a catalog id in [0, {self.catalog.n_tracks})")

    def true_tags(self, track: int) -> list[int] | None:
        """The hidden true tags of `track` from the world (None without --world)."""
        if self.world is None:
            return None
        if self._true_tags is None:
            from sim.world import World  # the simulator's side: the hidden world, only with --world

            world = World(self.world)
            self._true_tags = (np.asarray(world.true_tags_indptr), np.asarray(world.true_tags_indices))
        indptr, indices = self._true_tags
        return [int(i) for i in indices[indptr[track] : indptr[track + 1]]]


def artifacts(lab: Lab) -> list[dict[str, Any]]:
    """Every artifact: its model, config, training facts, training curve, the metrics recorded in model.json
    and the offline evaluation saved beside it, if any."""
    out: list[dict[str, Any]] = []
    for name, directory in lab.artifacts.items():
        try:
            metadata = read_metadata(directory)
        except ArtifactError as error:
            out.append({"name": name, "path": str(directory), "error": str(error)})
            continue
        facts = dict(metadata["data"])
        history = facts.pop("history", None) or []
        metrics = facts.pop("metrics", None) or {}
        facts.pop("tag_names", None)
        out.append(
            {
                "name": name,
                "path": str(directory),
                "model": metadata["model"],
                "config": {k: v for k, v in metadata["config"].items() if not isinstance(v, (list, dict)) or len(v) < 12},
                "facts": {k: v for k, v in facts.items() if isinstance(v, (int, float, str, bool))},
                "history": [{k: _number(v) for k, v in row.items()} for row in history if isinstance(row, dict)],
                "metrics": {k: _number(v) for k, v in metrics.items() if isinstance(v, (int, float))},
                "evaluation": _evaluation(directory),
            }
        )
    return out


def _evaluation(directory: Path) -> dict[str, Any] | None:
    """The offline evaluation saved beside the artifact (`recommenders evaluate --save`), if any:
    its settings and one row per ranker (the model, then the baselines)."""
    saved = read_saved(directory)
    if saved is None:
        return None
    rows = [{k: _number(v) for k, v in row.items()} for row in saved["rows"] if isinstance(row, dict)]
    return {"settings": saved["settings"], "rows": rows}


def track(lab: Lab, track_id: int, *, user: int = 0, k: int = NEIGHBOURS) -> dict[str, Any]:
    """A track's record, its neighbours by each model and its tag probabilities (when a tag model is found).

    A model's neighbours are the `k` tracks it would serve first to listener `user` whose session
    so far is this one track, fully listened (`CatalogScorer.rank`), with the model's scores.
    """
    lab.check_track(track_id)
    request = Request(user=user, track=track_id, time=1.0, history=(track_id,), times=(1.0,))
    neighbours = []
    for name in lab.artifacts:
        entry: dict[str, Any] = {"artifact": name, "model": None, "tracks": []}
        try:
            model = lab.model(name)
            entry["model"] = model.name
            if not hasattr(model, "rank"):
                entry["note"] = f"{model.name} does not rank the catalog"
            else:
                ranked = model.rank([request], k)
                scores = model.score([request], ranked)[0]
                entry["tracks"] = [
                    {**_brief(lab.catalog, int(t)), "score": _number(float(s))} for t, s in zip(ranked[0], scores, strict=True)
                ]
        except Exception as error:
            entry["note"] = f"{type(error).__name__}: {error}"
        neighbours.append(entry)
    return {"track": lab.catalog.record(track_id), "user": user, "neighbours": neighbours, "tags": tags(lab, track_id)}


def _brief(catalog: Catalog, track_id: int) -> dict[str, Any]:
    record = catalog.record(track_id)
    return {"track": track_id, "artist": record["artist"], "title": record["title"]}


def tags(lab: Lab, track_id: int) -> dict[str, Any] | None:
    """The tag model's probability per tag for `track_id`, sorted, with the dynamic threshold and the
    predicted, observed and (with --world) true tags; None when no tag model artifact is found.

    The threshold is the first of the grid (0.55, then lower steps; `selection.assign_tags`) that
    the best tag reaches; below the whole grid the single best tag is predicted.
    """
    names = [n for n in lab.artifacts if read_metadata(lab.artifacts[n]).get("model") == TAG_MODEL]
    if not names:
        return None
    model = lab.model(names[0])
    probabilities = np.asarray(model.tag_scores(np.array([track_id], dtype=np.int64)), dtype=float)[0]
    grid = tuple(float(t) for t in getattr(getattr(model, "config", None), "thresholds", DEFAULT_THRESHOLDS))
    best = float(probabilities.max()) if len(probabilities) else 0.0
    threshold = next((t for t in grid if best >= t), None)
    predicted = set(np.flatnonzero(assign_tags(probabilities[None, :], grid)[0]).tolist())
    observed = {int(i) for i in lab.catalog.tags(track_id)}
    true = lab.true_tags(track_id)
    order = np.argsort(-probabilities, kind="stable")
    rows = [
        {
            "tag": lab.catalog.tag_names[i],
            "probability": float(probabilities[i]),
            "predicted": int(i) in predicted,
            "observed": int(i) in observed,
            "true": None if true is None else int(i) in true,
        }
        for i in order
    ]
    return {"artifact": names[0], "threshold": threshold, "grid": list(grid), "rows": rows, "world": true is not None}
