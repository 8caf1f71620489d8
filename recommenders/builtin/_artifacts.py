"""Artifact directories of the built-ins: a `manifest.json` plus plain Parquet tables.

Nothing is pickled: a manifest is JSON, tables are Parquet with integer and float columns, so an
artifact written by any tool (DuckDB, Spark, pandas) that follows the documented columns loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class ArtifactError(ValueError):
    """An artifact directory that is missing, of another recommender, or malformed."""


def write_manifest(directory: Path, recommender: str, **fields: Any) -> None:
    """Write `manifest.json`: which recommender the directory belongs to, the format and `fields`."""
    manifest = {"recommender": recommender, "format": FORMAT_VERSION, **fields}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(directory: Path, recommender: str) -> dict[str, Any]:
    """Read and check `manifest.json`; the error says what is wrong and how to make a good one."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory} has no {MANIFEST}: it is not a {recommender!r} artifact (write one with fit(...).save(DIR))")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    if manifest.get("recommender") != recommender:
        raise ArtifactError(f"{path} belongs to recommender {manifest.get('recommender')!r}, not {recommender!r}")
    if manifest.get("format") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format == {manifest.get('format')!r}, this version reads format {FORMAT_VERSION}")
    return manifest


def read_table(directory: Path, filename: str, columns: dict[str, str]) -> pd.DataFrame:
    """Read a Parquet table and check that it has `columns` (name -> "int" or "float")."""
    path = directory / filename
    if not path.is_file():
        raise ArtifactError(f"artifact {directory} is missing {filename}")
    table = pd.read_parquet(path)
    for column, kind in columns.items():
        if column not in table.columns:
            raise ArtifactError(f"{path} has no column {column!r} (columns: {', '.join(map(str, table.columns))})")
        dtype = table[column].dtype
        if kind == "int" and not pd.api.types.is_integer_dtype(dtype):
            raise ArtifactError(f"{path}: column {column!r} is {dtype}, must be integer")
        if kind == "float" and not pd.api.types.is_numeric_dtype(dtype):
            raise ArtifactError(f"{path}: column {column!r} is {dtype}, must be numeric")
    return table
