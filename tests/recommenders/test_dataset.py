"""Dataset: reading the event log from DuckDB and Parquet, likes, the like matrix, time splits."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from contracts.catalog import Catalog
from contracts.columns import DUCKDB_TYPES, Columns
from recommenders.dataset import Dataset, DatasetError
from recommenders.testing import make_events


@pytest.fixture
def events(tiny_catalog: Catalog) -> pd.DataFrame:
    return make_events(tiny_catalog, users=5, sessions_per_user=2, session_length=4)


def _write_duckdb(events: pd.DataFrame, path: Path) -> None:
    schema = ", ".join(f'"{name}" {kind}' for name, kind in DUCKDB_TYPES.items())
    columns = ", ".join(f'"{name}"' for name in Columns.ALL if name != Columns.EXPERIMENTS)
    frame = events.drop(columns=[Columns.EXPERIMENTS])  # noqa: F841 (read by DuckDB by name)
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"CREATE TABLE events ({schema})")
        connection.execute(f"INSERT INTO events ({columns}) SELECT {columns} FROM frame")


def test_from_duckdb_log(events: pd.DataFrame, tmp_path: Path) -> None:
    _write_duckdb(events, tmp_path / "events.duckdb")
    dataset = Dataset.from_log(tmp_path / "events.duckdb")
    assert len(dataset) == len(events) == 40
    assert dataset.interactions[Columns.TRACK].tolist() == events[Columns.TRACK].tolist()
    assert dataset.interactions[Columns.USER].dtype == np.int64
    assert Columns.EXPERIMENTS not in dataset.interactions.columns


def test_from_parquet_file_and_partitioned_directory(events: pd.DataFrame, tmp_path: Path) -> None:
    frame = events.drop(columns=[Columns.EXPERIMENTS])
    frame.to_parquet(tmp_path / "events.parquet")
    assert len(Dataset.from_log(tmp_path / "events.parquet")) == 40
    frame.assign(day=frame[Columns.TS].dt.day).to_parquet(tmp_path / "export", partition_cols=["day"])
    partitioned = Dataset.from_log(tmp_path / "export")
    assert sorted(partitioned.interactions[Columns.TRACK]) == sorted(frame[Columns.TRACK])


def test_missing_log_and_bad_table(tmp_path: Path, events: pd.DataFrame) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        Dataset.from_log(tmp_path / "nope.duckdb")
    _write_duckdb(events, tmp_path / "events.duckdb")
    with pytest.raises(DatasetError, match="cannot read the event log"):
        Dataset.from_log(tmp_path / "events.duckdb", table="plays")
    with pytest.raises(DatasetError, match="plain SQL identifier"):
        Dataset.from_log(tmp_path / "events.duckdb", table="events; DROP TABLE events")


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({Columns.USER: [1], Columns.TIME: [0.5]}), "lack column\\(s\\) track"),
        (pd.DataFrame({Columns.USER: [1], Columns.TRACK: [2], Columns.TIME: [1.5]}), "must lie in \\[0, 1\\]; 1 rows"),
        (pd.DataFrame({Columns.USER: [None], Columns.TRACK: [2], Columns.TIME: [0.5]}), "'user' has missing values"),
    ],
)
def test_bad_interactions_are_named(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        Dataset(frame)


def test_likes_keep_the_best_time_per_user_and_track() -> None:
    dataset = Dataset(
        pd.DataFrame(
            {
                Columns.USER: [2, 1, 1, 1, 2],
                Columns.TRACK: [7, 5, 5, 6, 8],
                Columns.TIME: [0.4, 0.6, 0.9, 0.5, 1.0],
            }
        )
    )
    likes = dataset.likes(0.5)
    assert likes.to_dict("list") == {Columns.USER: [1, 1, 2], Columns.TRACK: [5, 6, 8], Columns.TIME: [0.9, 0.5, 1.0]}
    users, matrix = dataset.like_matrix(n_tracks=8, threshold=0.5)  # track 8 lies outside
    assert users.tolist() == [1] and matrix.toarray().tolist() == [[0, 0, 0, 0, 0, 1, 1, 0]]
    with pytest.raises(ValueError, match="threshold == 2"):
        dataset.likes(2)


def test_between_splits_by_simulated_time(events: pd.DataFrame) -> None:
    dataset = Dataset(events)
    cut = events[Columns.TS].iloc[25]
    early, late = dataset.between(end=cut), dataset.between(start=cut)
    assert (len(early), len(late)) == (25, 15)
    assert early.interactions[Columns.TS].max() < cut <= late.interactions[Columns.TS].min()
