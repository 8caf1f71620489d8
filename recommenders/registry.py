"""Names -> recommender classes: the built-ins plus plugins from the `botify.recommenders` entry points.

Entries are import paths ("package.module:Class"), imported only when first used, so listing
names is cheap and a broken plugin only fails when it is asked for. A third-party package
registers with, in its `pyproject.toml`::

    [project.entry-points."botify.recommenders"]
    my_model = "my_package.model:MyRecommender"
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NamedTuple

from contracts.catalog import Catalog
from recommenders.base import Fittable, Recommender

ENTRY_POINT_GROUP = "botify.recommenders"

BUILTINS: dict[str, str] = {
    "random": "recommenders.builtin.random:RandomRecommender",
    "top_pop": "recommenders.builtin.top_pop:TopPopRecommender",
    "sticky_artist": "recommenders.builtin.sticky_artist:StickyArtistRecommender",
    "indexed": "recommenders.builtin.indexed:IndexedRecommender",
    "i2i": "recommenders.builtin.i2i:I2IRecommender",
    "dssm": "recommenders.models.dssm:DSSMRecommender",
    "bpr_knn": "recommenders.models.bpr_knn:BPRKNNRecommender",
    "sasrec": "recommenders.models.sasrec:SASRecRecommender",
    "hstu": "recommenders.models.hstu:HSTURecommender",
    "tags": "recommenders.models.tags:TagRecommender",
    "content": "recommenders.models.content:ContentRecommender",
    "cold_mix": "recommenders.models.mix:ColdMixRecommender",
    "oracle": "recommenders.builtin.oracle:OracleRecommender",
}


class RegistryError(LookupError):
    """An unknown recommender name, or a registered entry that cannot be loaded."""


_extra: dict[str, str] = {}


def register(name: str, target: str) -> None:
    """Register `target` ("module:Class") under `name`; a later registration replaces an earlier one."""
    if ":" not in target:
        raise ValueError(f"target == {target!r}, must look like 'package.module:Class'")
    _extra[name] = target


class Entry(NamedTuple):
    """Where a name comes from: its import path and its origin."""

    name: str
    target: str  # "package.module:Class"
    origin: str  # "builtin", "plugin <distribution>" or "runtime"


def entries() -> dict[str, Entry]:
    """Every registered name with its import path and origin; later origins override earlier ones."""
    found: dict[str, Entry] = {name: Entry(name, target, "builtin") for name, target in BUILTINS.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        distribution = ep.dist.name if ep.dist is not None else "unknown distribution"
        found[ep.name] = Entry(ep.name, ep.value, f"plugin {distribution}")
    found.update({name: Entry(name, target, "runtime") for name, target in _extra.items()})
    return found


def _entries() -> dict[str, str]:
    return {name: entry.target for name, entry in entries().items()}


def names() -> list[str]:
    """Every registered name: built-ins, installed plugins and runtime registrations."""
    return sorted(_entries())


def get_class(name: str) -> type[Recommender]:
    """The class registered under `name`; unknown names get a "did you mean" hint."""
    entries = _entries()
    if name not in entries:
        close = difflib.get_close_matches(name, entries, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise RegistryError(f"no recommender named {name!r}.{hint} Registered: {', '.join(sorted(entries))}")
    module_name, _, attribute = entries[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise RegistryError(f"recommender {name!r} is registered as {entries[name]!r}, which cannot be loaded: {error}") from error
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise RegistryError(f"recommender {name!r} ({entries[name]}) is not a subclass of recommenders.base.Recommender")
    return cls


def make(name: str, catalog: Catalog, params: dict[str, Any] | None = None, artifact: str | Path | None = None) -> Recommender:
    """Build a ready-to-serve recommender: construct with `params`, then load `artifact` (a `Fittable`'s).

    A `Trainable` needs an artifact; a `Fittable` may have one; any other recommender takes none.
    """
    cls = get_class(name)
    try:
        recommender = cls(catalog, **(params or {}))
    except (TypeError, ValueError) as error:
        raise RegistryError(f"recommender {name!r}: bad parameters: {error}") from error
    if not isinstance(recommender, Fittable):
        if artifact is not None:
            raise RegistryError(f"recommender {name!r} takes no artifact, but artifact {artifact} was given")
    elif artifact is not None:
        recommender.load(artifact)
    elif recommender.requires_fit:
        raise RegistryError(f"recommender {name!r} is trainable and needs an artifact directory (train it with `recommenders train {name}`)")
    return recommender
