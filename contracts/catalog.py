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
from typing import TYPE_CHECKING, Any

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
CATALOG_COLUMNS = ("track", "artist", "title", "artist_name", "duration", "popularity", "release_day")


class CatalogError(ValueError):
    """A world directory that is missing, incomplete, inconsistent or of another format version.

    The message is one line that names the file and what is wrong with it.
    """


def one_line(error: BaseException) -> str:
    """`error`'s message on one line (library messages may span several), for a one-line report."""
    return " ".join(str(error).split()) or type(error).__name__


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of the .npy file `path`, checked against the file's size.

    Only the header is read, so a large file is checked without touching its data: a file
    shorter than its header promises (a copy cut short) raises `CatalogError` naming the
    bytes expected and found, as does an empty file, a file that is not .npy at all, and an
    array of Python objects (which would need pickle to load).
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            if size == 0:
                raise CatalogError(f"{path}: the file is empty (0 bytes), expected a .npy array")
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
            offset = file.tell()
    except CatalogError:
        raise
    except OSError as error:
        raise CatalogError(f"{path}: cannot read: {error.strerror or one_line(error)}") from None
    except (ValueError, EOFError) as error:
        raise CatalogError(f"{path}: not a .npy array ({one_line(error)})") from None
    if dtype.hasobject:
        raise CatalogError(f"{path}: holds Python objects (dtype {dtype}), expected numbers")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise CatalogError(f"{path}: {state}: shape {shape} of {dtype} needs {expected} bytes, the file has {size}")
    return tuple(shape), dtype, offset


_KIND_NAMES = {"iu": "integers", "f": "floats"}


def load_npy(path: Path, *, mmap: bool = False, ndim: int | None = None, kind: str | None = None) -> np.ndarray:
    """The array in `path`, checked first by `npy_header` (and for `ndim` dimensions and a dtype
    of `kind`, numpy's kind codes: "i" integers, "f" floats); memory-mapped read-only with `mmap`.

    Errors are `CatalogError`s naming the file, never numpy's own.
    """
    shape, dtype, _ = npy_header(path)
    if ndim is not None and len(shape) != ndim:
        raise CatalogError(f"{path}: has {len(shape)} dimension(s) (shape {shape}), expected {ndim}")
    if kind is not None and dtype.kind not in kind:
        raise CatalogError(f"{path}: has dtype {dtype}, expected {_KIND_NAMES.get(kind, kind)}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise CatalogError(f"{path}: cannot load: {one_line(error)}") from None


def check_offsets(offsets: np.ndarray, path: Path, rows: int, what: str, end: int, end_what: str) -> None:
    """Check CSR-style `offsets` (from `path`): `rows` + 1 entries, starting at 0, never
    decreasing, ending at `end` (the length of the array they index, `end_what`)."""
    if len(offsets) != rows + 1:
        raise CatalogError(f"{path}: has {len(offsets)} offsets, expected {rows + 1} ({what} + 1): is it from another world?")
    if offsets[0] != 0:
        raise CatalogError(f"{path}: the first offset is {offsets[0]}, must be 0")
    steps = np.diff(offsets)
    if (steps < 0).any():
        raise CatalogError(f"{path}: offsets decrease at row {int(np.argmax(steps < 0))}, must never decrease")
    if offsets[-1] != end:
        raise CatalogError(f"{path}: the last offset is {offsets[-1]}, must equal {end_what} ({end})")


def check_range(values: np.ndarray, path: Path, limit: int, what: str) -> None:
    """Check that every entry of `values` (from `path`) lies in 0..`limit` - 1."""
    if len(values) and (values.min() < 0 or values.max() >= limit):
        bad = values[(values < 0) | (values >= limit)]
        raise CatalogError(f"{path}: {len(bad)} entries outside 0..{limit - 1} ({what}), e.g. {bad[0]}")


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
    manifest = read_manifest(world_dir)
    if manifest is not None:
        return _manifest_fingerprint(manifest)
    try:
        content = (world_dir / PUBLIC_DIR / CATALOG_FILE).read_bytes()
    except OSError as error:
        raise CatalogError(f"{world_dir / PUBLIC_DIR / CATALOG_FILE}: cannot read: {error.strerror}") from None
    return hashlib.sha256(content).hexdigest()[:16]


def _manifest_fingerprint(manifest: dict[str, Any]) -> str:
    """The fingerprint of a parsed manifest: its canonical JSON, hashed (YAML layout does not count)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def read_manifest(world_dir: str | Path) -> dict[str, Any] | None:
    """The parsed `world.yml` of `world_dir` (None when there is none), checked to be a mapping of
    this format version; `CatalogError` names the file and the problem otherwise."""
    path = Path(world_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    import yaml  # only the manifest is YAML

    try:
        manifest = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as error:
        raise CatalogError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not a text file (not UTF-8), expected YAML") from None
    except yaml.YAMLError as error:
        raise CatalogError(f"{path}: not valid YAML: {one_line(error)}") from None
    if not isinstance(manifest, dict):
        raise CatalogError(f"{path}: expected a mapping with format_version and config, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CatalogError(
            f"{path}: format_version == {version!r}, this code reads {FORMAT_VERSION}; "
            "regenerate the world with `python -m sim.world --force`"
        )
    if not isinstance(manifest.get("config"), dict):
        raise CatalogError(f"{path}: lacks the mapping 'config' (the generation config)")
    return manifest


class Catalog:
    """Read-only view of a world's public part; frames are memory-mapped, not loaded.

    Opening checks every file cheaply (headers against file sizes, array lengths against the
    number of tracks, offsets and tag indices in range, the manifest's format) without reading
    the frames, and raises `CatalogError` with one line naming the file and the problem.

    Attributes are numpy arrays indexed by track id: `artist` (int32), `title` and
    `artist_name` (object), `duration` (float32, seconds), `popularity` (float64, sums to 1),
    `release_day` (int32, 0 for the initial catalog). Besides them: `path` (the world
    directory), `n_tracks` (track ids are 0..n_tracks-1), `n_artists` (artist ids are
    0..n_artists-1) and `tag_names` (the observed tags' names, indexed by tag id).
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
        manifest = read_manifest(self.path)  # a bad world.yml fails here, not at the first fingerprint
        catalog_path = public / CATALOG_FILE
        try:
            table = pq.ParquetFile(catalog_path).read()
        except (pa.ArrowException, OSError, ValueError) as error:
            raise CatalogError(f"{catalog_path}: not a readable Parquet file ({one_line(error)})") from None
        absent = [name for name in CATALOG_COLUMNS if name not in table.column_names]
        if absent:
            raise CatalogError(f"{catalog_path}: lacks column(s) {', '.join(absent)}")

        def column(name: str, dtype: type) -> np.ndarray:
            return _to_numpy(table, name, catalog_path).astype(dtype, copy=False)

        if not np.array_equal(column("track", np.int64), np.arange(table.num_rows)):
            raise CatalogError(f"{catalog_path}: track ids must be 0..n-1 in order")
        self.n_tracks = table.num_rows
        self.artist = column("artist", np.int32)
        self.title = column("title", object)
        self.artist_name = column("artist_name", object)
        self.duration = column("duration", np.float32)
        self.popularity = column("popularity", np.float64)
        self.release_day = column("release_day", np.int32)
        if self.n_tracks and self.artist.min() < 0:
            raise CatalogError(f"{catalog_path}: column 'artist' has negative ids")
        self.n_artists = int(self.artist.max()) + 1 if self.n_tracks else 0
        self._manifest = manifest
        names_path = public / TAG_NAMES_FILE
        try:
            self.tag_names: list[str] = json.loads(names_path.read_text())
        except (OSError, ValueError) as error:
            raise CatalogError(f"{names_path}: not a readable JSON list ({one_line(error)})") from None
        if not isinstance(self.tag_names, list) or not all(isinstance(name, str) for name in self.tag_names):
            raise CatalogError(f"{names_path}: expected a JSON list of tag names (strings)")
        self._tags_indptr = load_npy(public / TAGS_INDPTR_FILE, ndim=1, kind="iu")
        self._tags_indices = load_npy(public / TAGS_INDICES_FILE, ndim=1, kind="iu")
        check_offsets(self._tags_indptr, public / TAGS_INDPTR_FILE, self.n_tracks, "tracks",
                      len(self._tags_indices), f"the length of {TAGS_INDICES_FILE}")
        check_range(self._tags_indices, public / TAGS_INDICES_FILE, self.n_tags, f"indices into {TAG_NAMES_FILE}")
        self._frames = load_npy(public / FRAMES_FILE, mmap=True, ndim=2, kind="f")
        self._frame_offsets = load_npy(public / FRAME_OFFSETS_FILE, ndim=1, kind="iu")
        check_offsets(self._frame_offsets, public / FRAME_OFFSETS_FILE, self.n_tracks, "tracks",
                      self._frames.shape[0], f"the rows of {FRAMES_FILE}")

    @cached_property
    def fingerprint(self) -> str:
        """The world's `world_fingerprint` (of the manifest read at opening)."""
        if self._manifest is None:
            return world_fingerprint(self.path)
        return _manifest_fingerprint(self._manifest)

    def __len__(self) -> int:
        return self.n_tracks

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r}, tracks={self.n_tracks}, artists={self.n_artists})"

    @property
    def n_tags(self) -> int:
        """Number of tags in the vocabulary (tag ids are 0..n_tags-1)."""
        return len(self.tag_names)

    @property
    def frame_dim(self) -> int:
        """Dimension of every content frame."""
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
