"""The hidden half of a world directory: file names, saving, and the `World` that loads both halves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts import catalog as public_format
from contracts.catalog import Catalog, CatalogError, one_line
from sim.world.config import ConfigError, WorldConfig, world_config_from_mapping

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
        self.catalog = Catalog(self.path)  # validates the public half and the manifest first
        manifest = public_format.read_manifest(self.path)
        manifest_path = self.path / public_format.MANIFEST_FILE
        if manifest is None:
            raise CatalogError(f"world {self.path} is incomplete: missing {manifest_path.name}")
        try:
            self.config: WorldConfig = world_config_from_mapping(manifest["config"], source=str(manifest_path))
        except ConfigError as error:
            raise CatalogError(one_line(error)) from None
        hidden = self.path / HIDDEN_DIR

        def load(name: str, rows: int | None = None, ndim: int | None = None, kind: str | None = None, what: str = "") -> np.ndarray:
            file = hidden / f"{name}.npy"
            if not file.is_file():
                raise CatalogError(f"world {self.path} is incomplete: missing {HIDDEN_DIR}/{file.name}")
            array = public_format.load_npy(file, mmap=mmap, ndim=ndim, kind=kind)
            if rows is not None and array.shape[0] != rows:
                raise CatalogError(f"{file}: has {array.shape[0]} rows, expected {rows} ({what}): is it from another world?")
            # A plain ndarray view of the map: numpy.memmap's per-access Python overhead adds up
            # in the simulator's hot loops.
            return array.view(np.ndarray) if isinstance(array, np.memmap) else array

        # Lengths are checked against the catalog and the manifest; large arrays are not read
        # whole (only the offsets, which are loaded anyway, are checked entry by entry).
        config, n_tracks = self.config, self.catalog.n_tracks
        generated = config.tracks + config.new_tracks_per_day * config.release_days
        if generated != n_tracks:
            raise CatalogError(f"{manifest_path}: says {generated} tracks (releases included), the catalog has {n_tracks}")
        taste = load("track_taste", n_tracks, 2, "f", "tracks")
        if taste.shape[1] != config.taste_dim:
            raise CatalogError(f"{hidden / 'track_taste.npy'}: has {taste.shape[1]} columns, expected taste_dim {config.taste_dim}")
        self.taste = np.ascontiguousarray(taste)  # (n_tracks, taste_dim), hot: keep in RAM
        self.track_genre = load("track_genre", n_tracks, 1, "iu", "tracks")
        self.artist_genre = load("artist_genre", None, 1, "iu")
        if len(self.artist_genre) < self.catalog.n_artists:
            raise CatalogError(
                f"{hidden / 'artist_genre.npy'}: has {len(self.artist_genre)} artists, the catalog names {self.catalog.n_artists}"
            )
        self.genre_centres = load("genre_centres", config.genres, 2, "f", "genres")
        self.true_tags_indptr = load("true_tags_indptr", n_tracks + 1, 1, "iu", "tracks + 1")
        self.true_tags_indices = load("true_tags_indices", None, 1, "iu")
        public_format.check_offsets(np.asarray(self.true_tags_indptr), hidden / "true_tags_indptr.npy", n_tracks, "tracks",
                                    len(self.true_tags_indices), "the length of true_tags_indices.npy")
        offsets = load("interest_offsets", config.users + 1, 1, "iu", "users + 1")
        interests = load("interests", None, 2, "f")
        public_format.check_offsets(np.asarray(offsets), hidden / "interest_offsets.npy", config.users, "users",
                                    len(interests), "the rows of interests.npy")
        self.listeners = Listeners(
            interest_offsets=offsets,
            interests=interests,
            interest_genre=load("interest_genre", len(interests), 1, "iu", "interests"),
            interest_nearest=load("interest_nearest", len(interests), 2, "iu", "interests"),
            **{name: np.asarray(load(name, config.users, 1, None, "users")) for name in BEHAVIOUR_PARAMETERS},
        )

    @property
    def n_tracks(self) -> int:
        return self.catalog.n_tracks

    @property
    def n_users(self) -> int:
        return self.listeners.n_users

    def __repr__(self) -> str:
        return f"World({str(self.path)!r}, tracks={self.n_tracks}, users={self.n_users}, seed={self.config.seed})"
