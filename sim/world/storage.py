"""The hidden half of a world directory: file names, saving, and the `World` that loads both halves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from contracts import catalog as public_format
from contracts.catalog import Catalog, CatalogError
from sim.world.config import WorldConfig, world_config_from_mapping

HIDDEN_DIR = "hidden"
BEHAVIOUR_PARAMETERS = (
    "consume_bias",
    "consume_sharpness",
    "session_budget",
    "artist_discount_gamma",
    "interest_neighbours",
)
INTEGER_PARAMETERS = frozenset({"session_budget", "interest_neighbours"})


def save_hidden(hidden_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write each hidden array as `<name>.npy` (memory-mappable on load)."""
    for name, array in arrays.items():
        np.save(hidden_dir / f"{name}.npy", array)


@dataclass(frozen=True)
class Listeners:
    """Hidden per-listener arrays, indexed by user id (interests by interest index).

    The interests of user `u` are rows `interest_offsets[u]:interest_offsets[u + 1]` of
    `interests`; `interest_nearest[i]` lists interest `i`'s nearest tracks, best first.
    """

    interest_offsets: np.ndarray
    interests: np.ndarray
    interest_genre: np.ndarray
    interest_nearest: np.ndarray
    consume_bias: np.ndarray
    consume_sharpness: np.ndarray
    session_budget: np.ndarray
    artist_discount_gamma: np.ndarray
    interest_neighbours: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.consume_bias)

    def interests_of(self, user: int) -> np.ndarray:
        """Interest indices of `user`."""
        return np.arange(self.interest_offsets[user], self.interest_offsets[user + 1])


class World:
    """A whole world: the public `catalog` plus the hidden truth the simulator needs.

    Only the simulator and the oracle read the hidden arrays; recommenders get `catalog`.
    """

    def __init__(self, world_dir: str | Path, *, mmap: bool = True) -> None:
        self.path = Path(world_dir)
        self.catalog = Catalog(self.path)  # validates the public half first
        manifest_path = self.path / public_format.MANIFEST_FILE
        try:
            manifest = yaml.safe_load(manifest_path.read_text())
        except OSError as error:
            raise CatalogError(f"world {self.path}: cannot read {manifest_path.name}: {error.strerror}") from None
        version = manifest.get("format_version")
        if version != public_format.FORMAT_VERSION:
            raise CatalogError(
                f"world {self.path} has format version {version}, this code reads {public_format.FORMAT_VERSION}; "
                "regenerate it with `python -m sim.world --force`"
            )
        self.config: WorldConfig = world_config_from_mapping(manifest["config"], source=str(manifest_path))
        mode = "r" if mmap else None
        hidden = self.path / HIDDEN_DIR

        def load(name: str) -> np.ndarray:
            file = hidden / f"{name}.npy"
            if not file.is_file():
                raise CatalogError(f"world {self.path} is incomplete: missing {HIDDEN_DIR}/{file.name}")
            array = np.load(file, mmap_mode=mode)
            # A plain ndarray view of the map: numpy.memmap's per-access Python overhead adds up
            # in the simulator's hot loops.
            return array.view(np.ndarray) if isinstance(array, np.memmap) else array

        self.taste = np.ascontiguousarray(load("track_taste"))  # (n_tracks, taste_dim), hot: keep in RAM
        self.track_genre = load("track_genre")
        self.artist_genre = load("artist_genre")
        self.genre_centres = load("genre_centres")
        self.true_tags_indptr = load("true_tags_indptr")
        self.true_tags_indices = load("true_tags_indices")
        self.listeners = Listeners(
            **{name: load(name) for name in ("interest_offsets", "interests", "interest_genre", "interest_nearest")},
            **{name: np.asarray(load(name)) for name in BEHAVIOUR_PARAMETERS},
        )

    @property
    def n_tracks(self) -> int:
        return self.catalog.n_tracks

    @property
    def n_users(self) -> int:
        return self.listeners.n_users

    def __repr__(self) -> str:
        return f"World({str(self.path)!r}, tracks={self.n_tracks}, users={self.n_users}, seed={self.config.seed})"
