"""`Dataset`: the event log as interactions, the one container that training code reads.

Every row of the log is a play: `track` was listened for the fraction `time` by `user` (in
`session`, at `ts`) before the client asked for the next track or ended the session. So the
interactions are the log's rows, with the column names of `contracts.columns.Columns`; ids stay
external (the ids of the HTTP API and the catalog). `likes(threshold)` keeps the plays listened
at least that far, the implicit feedback most models learn from.

Example:
    >>> dataset = Dataset.from_log("data/events.duckdb")  # doctest: +SKIP
    >>> liked = dataset.likes(0.5)  # one row per (user, track) listened to at least half  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from contracts.columns import EVENTS_TABLE, WORLDS_TABLE, Columns, WorldColumns, quote
from contracts.eventlog import LogError, open_log
from contracts.eventlog.reader import duckdb_message, tables

#: The log's columns that a Dataset keeps (the experiments map and latency are the service's business).
INTERACTION_COLUMNS = (
    Columns.TS,
    Columns.USER,
    Columns.SESSION,
    Columns.MESSAGE,
    Columns.TRACK,
    Columns.TIME,
    Columns.RECOMMENDATION,
    Columns.RECOMMENDER,
)
REQUIRED_COLUMNS = (Columns.USER, Columns.TRACK, Columns.TIME)


class DatasetError(ValueError):
    """An event log or DataFrame that cannot be read as interactions; the message says why."""


class Dataset:
    """Interactions from the event log: one row per play, columns named by `Columns`.

    Args:
        interactions: a DataFrame with at least `user`, `track` and `time` (the others of
            `INTERACTION_COLUMNS` are kept when present). Rows are sorted by `ts` when it exists,
            so "earlier" means earlier in simulated time.
    """

    def __init__(self, interactions: pd.DataFrame) -> None:
        missing = [column for column in REQUIRED_COLUMNS if column not in interactions.columns]
        if missing:
            raise DatasetError(
                f"interactions lack column(s) {', '.join(missing)}; "
                f"expected the event log's columns ({', '.join(INTERACTION_COLUMNS)})"
            )
        frame = interactions[[column for column in INTERACTION_COLUMNS if column in interactions.columns]].copy()
        for column in (Columns.USER, Columns.TRACK):
            if frame[column].isna().any():
                raise DatasetError(f"column {column!r} has missing values")
            frame[column] = frame[column].astype(np.int64)
        frame[Columns.TIME] = frame[Columns.TIME].astype(np.float64)
        bad_time = ~frame[Columns.TIME].between(0.0, 1.0)
        if bad_time.any():
            raise DatasetError(f"column {Columns.TIME!r} must lie in [0, 1]; {int(bad_time.sum())} rows do not")
        if Columns.TS in frame.columns:
            frame = frame.sort_values(Columns.TS, kind="stable")
        self.interactions = frame.reset_index(drop=True)

    @classmethod
    def from_log(cls, path: str | Path, *, table: str = EVENTS_TABLE) -> Self:
        """Read an event log in any form `contracts.eventlog.open_log` reads: LOG, its segments,
        a `botify export` directory, Parquet files."""
        import duckdb  # imported here: only reading a log needs it

        if not table.isidentifier():
            raise DatasetError(f"table == {table!r}, must be a plain SQL identifier")
        columns = ", ".join(quote(column) for column in INTERACTION_COLUMNS)
        try:
            with open_log(path) as connection:
                frame = connection.execute(f"SELECT {columns} FROM {quote(table)}").df()
        except LogError as error:
            raise DatasetError(str(error)) from None
        except duckdb.Error as error:
            raise DatasetError(f"cannot read the event log {path}: {duckdb_message(error)}") from error
        return cls(frame)

    @classmethod
    def from_events(cls, events: pd.DataFrame | Dataset) -> Dataset:
        """A Dataset from a DataFrame with the log's columns; a Dataset is returned as is."""
        return events if isinstance(events, Dataset) else cls(events)

    def __len__(self) -> int:
        return len(self.interactions)

    def __repr__(self) -> str:
        return f"Dataset(interactions={len(self)}, users={self.interactions[Columns.USER].nunique()})"

    @property
    def users(self) -> np.ndarray:
        """Distinct user ids, ascending (int64)."""
        return np.unique(self.interactions[Columns.USER].to_numpy())

    def between(self, start: object = None, end: object = None) -> Dataset:
        """The interactions with `start <= ts < end` (either bound may be None): a time split."""
        if Columns.TS not in self.interactions.columns:
            raise DatasetError(f"the interactions have no {Columns.TS!r} column to split on")
        keep = pd.Series(True, index=self.interactions.index)
        if start is not None:
            keep &= self.interactions[Columns.TS] >= start
        if end is not None:
            keep &= self.interactions[Columns.TS] < end
        return Dataset(self.interactions[keep])

    def likes(self, threshold: float = 0.5) -> pd.DataFrame:
        """One row per (user, track) played with `time >= threshold`, keeping the best `time`.

        Columns `user`, `track`, `time`; sorted by user, then track.
        """
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold == {threshold!r}, must lie in [0, 1]")
        liked = self.interactions.loc[self.interactions[Columns.TIME] >= threshold, [Columns.USER, Columns.TRACK, Columns.TIME]]
        return liked.groupby([Columns.USER, Columns.TRACK], as_index=False, sort=True)[Columns.TIME].max()  # type: ignore[return-value]  # as_index=False: a frame

    def like_matrix(self, n_tracks: int, threshold: float = 0.5) -> tuple[np.ndarray, sp.csr_matrix]:
        """Likes as a binary (n_users, n_tracks) CSR matrix, with the user id of each row.

        Tracks outside 0..n_tracks-1 are dropped. Returns (users, matrix): row i is user `users[i]`.
        """
        liked = self.likes(threshold)
        liked = liked[(liked[Columns.TRACK] >= 0) & (liked[Columns.TRACK] < n_tracks)]
        users, rows = np.unique(liked[Columns.USER].to_numpy(), return_inverse=True)
        data = np.ones(len(liked), dtype=np.float32)
        matrix = sp.csr_matrix((data, (rows, liked[Columns.TRACK].to_numpy())), shape=(len(users), n_tracks))
        return users, matrix


EventsLike = pd.DataFrame | Dataset


def logged_worlds(path: str | Path) -> list[tuple[str, str]]:
    """The distinct (fingerprint, world path) pairs recorded by the services that wrote the log.

    Read from the log's `worlds` table (a service log, format 2 on, or an export's
    `worlds.parquet`); a log without that record (older, hand-made, a single Parquet file) gives [].
    """
    import duckdb

    query = f"SELECT DISTINCT {quote(WorldColumns.FINGERPRINT)}, {quote(WorldColumns.PATH)} FROM {WORLDS_TABLE} ORDER BY 1, 2"
    try:
        with open_log(path) as connection:
            if WORLDS_TABLE not in tables(connection):
                return []
            return [tuple(row) for row in connection.execute(query).fetchall()]
    except LogError as error:
        raise DatasetError(str(error)) from None
    except duckdb.Error as error:
        raise DatasetError(f"cannot read the worlds recorded in the event log {path}: {duckdb_message(error)}") from error


def as_interactions(events: EventsLike) -> pd.DataFrame:
    """The interactions DataFrame of `events` (a Dataset, or a DataFrame with the log's columns)."""
    return Dataset.from_events(events).interactions
