"""The truth file: potential outcomes of an experiment's listeners under every arm, beside the log.

The simulator replays every listener of a simulated experiment under each arm (`sim.run.replay`)
and writes one row per replayed session (`contracts.columns.TruthColumns`) to a Parquet file
next to LOG: `data/events.duckdb` -> `data/events.truth.parquet`. `abtest` reads it to put the
true effect beside each estimate. The file is written whole under a temporary name and renamed,
so a reader never sees half of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.columns import TRUTH_DUCKDB_TYPES, TruthColumns, quote

TRUTH_SUFFIX = ".truth.parquet"


def truth_path(log: str | Path) -> Path:
    """Where the truth of LOG lives: beside it, with the suffix `.truth.parquet`."""
    log = Path(log)
    if log.is_dir():
        return log / f"events{TRUTH_SUFFIX}"
    return log.with_name(log.stem + TRUTH_SUFFIX)


def truth_schema() -> pa.Schema:
    """The Arrow schema of the truth file, derived by DuckDB from the declared column types."""
    columns = ", ".join(f"NULL::{kind} AS {quote(name)}" for name, kind in TRUTH_DUCKDB_TYPES.items())
    with duckdb.connect() as connection:
        return connection.sql(f"SELECT {columns} LIMIT 0").arrow().schema


def write_truth(path: str | Path, columns: Mapping[str, Sequence[object]]) -> Path:
    """Write the truth file at `path` from one sequence per column of `TruthColumns.ALL`
    (`start` as epoch milliseconds); returns `path`."""
    missing = [name for name in TruthColumns.ALL if name not in columns]
    if missing:
        raise ValueError(f"truth columns {', '.join(missing)} are missing; need {', '.join(TruthColumns.ALL)}")
    schema = truth_schema()
    arrays = []
    for name in TruthColumns.ALL:
        kind = schema.field(name).type
        values = columns[name]
        if name == TruthColumns.START:
            arrays.append(pa.array(values, type=pa.int64()).cast(pa.timestamp("ms")).cast(kind))
        else:
            arrays.append(pa.array(values, type=kind))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), tmp)
    os.replace(tmp, path)
    return path


def read_truth_sql(path: str | Path) -> str:
    """A `FROM` clause over the truth file at `path` (for DuckDB)."""
    return "read_parquet('" + str(path).replace("'", "''") + "')"
