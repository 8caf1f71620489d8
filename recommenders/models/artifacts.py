"""The artifact directory of a learned model: `model.json` (metadata and config) plus `weights.npz`.

Weights are plain numpy arrays read with `allow_pickle=False`, so an artifact directory from
elsewhere can be loaded without running its code. `model.json` holds the model name, the
format version, the training config, and facts about the training data that evaluation
needs (the last session start it saw, so the test period never overlaps training).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recommenders.base import ArtifactError, check_world, world_record

if TYPE_CHECKING:
    from contracts.catalog import Catalog

FORMAT_VERSION = 1
METADATA_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"


__all__ = ["ArtifactError", "read_metadata", "read_weights", "write_artifact"]


def write_artifact(
    directory: Path, model: str, config: dict[str, Any], data: dict[str, Any], arrays: dict[str, np.ndarray], catalog: Catalog
) -> None:
    """Write `model.json` (with the `world_record` of `catalog`, the world trained on) and `weights.npz` into `directory`."""
    metadata = {"model": model, "format_version": FORMAT_VERSION, "config": config, "data": data, "world": world_record(catalog)}
    np.savez(directory / WEIGHTS_FILE, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as the allow_pickle flag
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def read_metadata(directory: Path, model: str | None = None, catalog: Catalog | None = None) -> dict[str, Any]:
    """The parsed `model.json` of `directory`, checked against `model`, the format version and,
    given `catalog`, the world it is loaded into (`check_world`)."""
    path = directory / METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
    except OSError:
        raise ArtifactError(f"{directory} is not a model artifact: {METADATA_FILE} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(metadata, dict) or not {"model", "format_version", "config", "data"} <= set(metadata):
        raise ArtifactError(f"{path} lacks one of the keys model, format_version, config, data")
    if metadata["format_version"] != FORMAT_VERSION:
        raise ArtifactError(f"{path} has format version {metadata['format_version']}, this code reads {FORMAT_VERSION}; retrain the model")
    if model is not None and metadata["model"] != model:
        raise ArtifactError(f"{directory} holds a {metadata['model']!r} model, not {model!r}")
    if catalog is not None:
        check_world(metadata.get("world"), catalog, directory)
    return metadata


def read_weights(directory: Path, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays `names` (all of them when None) of `directory`'s `weights.npz`, loaded without pickle."""
    path = directory / WEIGHTS_FILE
    try:
        # Opened here, not by np.load, which leaves its own handle open when the archive is corrupt.
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
            names = tuple(archive.files) if names is None else names
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise ArtifactError(f"{path} lacks array(s) {', '.join(missing)}")
            return {name: archive[name] for name in names}
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise ArtifactError(f"{directory} is not a complete model artifact: {WEIGHTS_FILE} is missing") from None
    except OSError as error:
        raise ArtifactError(f"cannot read {path}: {' '.join(str(error).split())}") from None
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        # An object array needing pickle, or a corrupt or truncated archive (a copy cut short).
        raise ArtifactError(f"{path} is not a readable numpy archive (truncated or corrupt?): {' '.join(str(error).split())}") from None


# A network's state_dict is stored beside the model's own arrays, its names prefixed.
NET_PREFIX = "net."


def join_network(weights: dict[str, np.ndarray], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One archive's arrays: the network's `weights` under `NET_PREFIX`, the model's `arrays` as they are."""
    return {**{NET_PREFIX + name: value for name, value in weights.items()}, **arrays}


def split_network(stored: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`join_network` undone: (network weights, the model's own arrays)."""
    weights = {name.removeprefix(NET_PREFIX): value for name, value in stored.items() if name.startswith(NET_PREFIX)}
    return weights, {name: value for name, value in stored.items() if not name.startswith(NET_PREFIX)}
