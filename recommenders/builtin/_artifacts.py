"""Artifact directories of the built-ins: a `manifest.json` plus plain Parquet tables.

Nothing is pickled: a manifest is JSON, tables are Parquet with integer and float columns, so an
artifact written by any tool (DuckDB, Spark, pandas) that follows the documented columns loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from recommenders.base import ArtifactError, check_world, world_record

if TYPE_CHECKING:
    import pandas as pd

    from contracts.catalog import Catalog

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


__all__ = ["ArtifactError", "read_manifest", "read_table", "write_manifest"]


def write_manifest(directory: Path, recommender: str, catalog: Catalog, **fields: Any) -> None:
    """Write `manifest.json`: which recommender the directory belongs to, the format, the world
    trained on (`world_record` of `catalog`) and `fields`."""
    manifest = {"recommender": recommender, "format": FORMAT_VERSION, "world": world_record(catalog), **fields}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(directory: Path, recommender: str, catalog: Catalog | None = None) -> dict[str, Any]:
    """Read and check `manifest.json` (given `catalog`, also the world it is loaded into: `check_world`);
    the error says what is wrong and how to make a good one."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory} has no {MANIFEST}: it is not a {recommender!r} artifact (write one with fit(...).save(DIR))")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    if manifest.get("recommender") != recommender:
        raise ArtifactError(f"{path} belongs to recommender {manifest.get('recommender')!r}, not {recommender!r}")
    if manifest.get("format") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format == {manifest.get('format')!r}, this version reads format {FORMAT_VERSION}")
    if catalog is not None:
        check_world(manifest.get("world"), catalog, directory)
    return manifest


def read_table(directory: Path, filename: str, columns: dict[str, str]) -> pd.DataFrame:
    """Read a Parquet table and check that it has `columns` (name -> "int" or "float")."""
    import pandas as pd  # imported here: serving a built-in without an artifact does without it (0.4 s to import)

    path = directory / filename
    if not path.is_file():
        raise ArtifactError(f"artifact {directory} is missing {filename}")
    try:
        table = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise ArtifactError(f"{path}: not a readable Parquet file ({' '.join(str(error).split())})") from None
    for column, kind in columns.items():
        if column not in table.columns:
            raise ArtifactError(f"{path} has no column {column!r} (columns: {', '.join(map(str, table.columns))})")
        dtype = table[column].dtype
        if kind == "int" and not pd.api.types.is_integer_dtype(dtype):
            raise ArtifactError(f"{path}: column {column!r} is {dtype}, must be integer")
        if kind == "float" and not pd.api.types.is_numeric_dtype(dtype):
            raise ArtifactError(f"{path}: column {column!r} is {dtype}, must be numeric")
    return table
