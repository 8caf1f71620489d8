"""The public catalog of a world directory: what a recommender may know about tracks.

A world directory (written by `python -m sim.world`) has a `public/` part, read here, and a
`hidden/` part that only the simulator reads. Public: track ids, artists, titles, durations,
a popularity prior, release days, the observed tags and the content frames. Track ids are
the external ids used by the HTTP API and the event log; they run from 0 to `n_tracks - 1`.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import scipy.sparse as sp

FORMAT_VERSION = 1
PUBLIC_DIR = "public"
CATALOG_FILE = "catalog.parquet"
TAG_NAMES_FILE = "tag_names.json"
TAGS_INDPTR_FILE = "tags_indptr.npy"
TAGS_INDICES_FILE = "tags_indices.npy"
FRAMES_FILE = "frames.npy"
FRAME_OFFSETS_FILE = "frame_offsets.npy"
MANIFEST_FILE = "world.yml"


class CatalogError(ValueError):
    """A world directory that is missing, incomplete or of another format version."""


# Arrow type names that numpy spells differently.
_ARROW_FLOATS = {"halffloat": np.float16, "float": np.float32, "double": np.float64}


def _to_numpy(table: pa.Table, name: str, source: Path) -> np.ndarray:
    """Column `name` of `table` (numbers or strings, no nulls) as a numpy array, without pandas.

    Every simulator and service start reads the catalog, and importing pandas is a large part
    of a start; pyarrow imports it from `read_table` (through pyarrow.dataset) and from
    `to_numpy`, so numbers are read from the Arrow buffers and strings as Python objects.
    """
    column = table.column(name)
    if column.null_count:
        raise CatalogError(f"{source}: column {name!r} has {column.null_count} missing values")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return np.array(column.to_pylist(), dtype=object)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise CatalogError(f"{source}: column {name!r} has type {column.type}, expected numbers or strings")
    dtype = np.dtype(_ARROW_FLOATS.get(str(column.type), str(column.type)))
    parts = [
        np.frombuffer(chunk.buffers()[1], dtype=dtype)[chunk.offset : chunk.offset + len(chunk)]
        for chunk in column.chunks
    ]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype)

def world_fingerprint(world_dir: str | Path) -> str:
    """16 hex digits that identify a world: a hash of its manifest (`world.yml`: format and
    generation config, seed included), so the same config and seed give the same fingerprint.

    The service reports it and records it in the log, so that a simulator or a training run can
    tell a log or a service of another world. A directory without a manifest (a catalog written
    by hand) is identified by its catalog file.
    """
    world_dir = Path(world_dir)
    manifest = world_dir / MANIFEST_FILE
    if manifest.is_file():
        import yaml  # only the fingerprint reads the manifest

        content = json.dumps(yaml.safe_load(manifest.read_text()), sort_keys=True, separators=(",", ":")).encode()
    else:
        content = (world_dir / PUBLIC_DIR / CATALOG_FILE).read_bytes()
    return hashlib.sha256(content).hexdigest()[:16]


class Catalog:
    """Read-only view of a world's public part; frames are memory-mapped, not loaded.

    Attributes are numpy arrays indexed by track id: `artist` (int32), `title` and
    `artist_name` (object), `duration` (float32, seconds), `popularity` (float64, sums to 1),
    `release_day` (int32, 0 for the initial catalog).
    """

    def __init__(self, world_dir: str | Path) -> None:
        self.path = Path(world_dir)
        public = self.path / PUBLIC_DIR
        if not public.is_dir():
            raise CatalogError(
                f"{self.path} is not a world directory (no {PUBLIC_DIR}/ inside); "
                "generate one with `python -m sim.world --out DIR`"
            )
        missing = [
            name
            for name in (CATALOG_FILE, TAG_NAMES_FILE, TAGS_INDPTR_FILE, TAGS_INDICES_FILE, FRAMES_FILE, FRAME_OFFSETS_FILE)
            if not (public / name).is_file()
        ]
        if missing:
            raise CatalogError(f"world {self.path} is incomplete: missing {', '.join(missing)} in {PUBLIC_DIR}/")
        table = pq.ParquetFile(public / CATALOG_FILE).read()

        def column(name: str, dtype: type) -> np.ndarray:
            return _to_numpy(table, name, public / CATALOG_FILE).astype(dtype, copy=False)

        if not np.array_equal(column("track", np.int64), np.arange(table.num_rows)):
            raise CatalogError(f"{public / CATALOG_FILE}: track ids must be 0..n-1 in order")
        self.n_tracks = table.num_rows
        self.artist = column("artist", np.int32)
        self.title = column("title", object)
        self.artist_name = column("artist_name", object)
        self.duration = column("duration", np.float32)
        self.popularity = column("popularity", np.float64)
        self.release_day = column("release_day", np.int32)
        self.n_artists = int(self.artist.max()) + 1 if self.n_tracks else 0
        self.tag_names: list[str] = json.loads((public / TAG_NAMES_FILE).read_text())
        self._tags_indptr = np.load(public / TAGS_INDPTR_FILE)
        self._tags_indices = np.load(public / TAGS_INDICES_FILE)
        self._frames = np.load(public / FRAMES_FILE, mmap_mode="r")
        self._frame_offsets = np.load(public / FRAME_OFFSETS_FILE)

    @cached_property
    def fingerprint(self) -> str:
        """The world's `world_fingerprint`."""
        return world_fingerprint(self.path)

    def __len__(self) -> int:
        return self.n_tracks

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r}, tracks={self.n_tracks}, artists={self.n_artists})"

    @property
    def n_tags(self) -> int:
        return len(self.tag_names)

    @property
    def frame_dim(self) -> int:
        return int(self._frames.shape[1])

    def contains(self, track: int) -> bool:
        """Whether `track` is a valid track id of this catalog."""
        return 0 <= track < self.n_tracks

    def tags(self, track: int) -> np.ndarray:
        """Indices of the observed tags of `track` (possibly empty)."""
        return self._tags_indices[self._tags_indptr[track] : self._tags_indptr[track + 1]]

    def tag_matrix(self) -> sp.csr_matrix:
        """Observed tags as a binary (n_tracks, n_tags) CSR matrix."""
        data = np.ones(len(self._tags_indices), dtype=np.float32)
        import scipy.sparse as sp

        return sp.csr_matrix((data, self._tags_indices, self._tags_indptr), shape=(self.n_tracks, self.n_tags))

    def n_frames(self, track: int) -> int:
        """Length of `track`'s content-frame sequence."""
        return int(self._frame_offsets[track + 1] - self._frame_offsets[track])

    def frame_lengths(self) -> np.ndarray:
        """Number of content frames of every track, shape (n_tracks,)."""
        return np.diff(self._frame_offsets)

    def frames(self, track: int) -> np.ndarray:
        """Content frames of `track`, shape (n_frames, frame_dim), float32."""
        start, stop = self._frame_offsets[track], self._frame_offsets[track + 1]
        return np.asarray(self._frames[start:stop], dtype=np.float32)

    @cached_property
    def _artist_index(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.artist, kind="stable").astype(np.int64)
        offsets = np.searchsorted(self.artist[order], np.arange(self.n_artists + 1))
        return order, offsets

    def tracks_of_artist(self, artist: int) -> np.ndarray:
        """Track ids of `artist`, ascending."""
        order, offsets = self._artist_index
        return order[offsets[artist] : offsets[artist + 1]]

    @cached_property
    def _release_index(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.release_day, kind="stable").astype(np.int64)
        return order, self.release_day[order]

    def released_after(self, day: int) -> np.ndarray:
        """Track ids released after simulated `day` (not yet out on that day), by release day."""
        order, days = self._release_index
        return order[np.searchsorted(days, day, side="right") :]

    def record(self, track: int) -> dict[str, object]:
        """The catalog record served by `GET /track/<track>`."""
        return {
            "track": int(track),
            "artist": str(self.artist_name[track]),
            "artist_id": int(self.artist[track]),
            "title": str(self.title[track]),
            "duration": round(float(self.duration[track]), 1),
            "tags": [self.tag_names[i] for i in self.tags(track)],
            "release_day": int(self.release_day[track]),
        }
