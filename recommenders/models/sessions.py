"""The event log as listening sessions: what training and offline evaluation work from.

Every event of the log is one playback: `track` was played and `time` is the fraction of it
listened. Events are grouped into sessions (by the `session` column when the client sent one,
otherwise a user's session ends with its `'last'` event) and ordered by `ts` within a session.
The first playback of a session was chosen by the listener, not recommended, and its `time` is
the course client's placeholder 1.0; it is kept as context.

A session belongs to the simulated day (UTC calendar day of `ts`) on which it started, so a
split by day never cuts a session in two.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from contracts.columns import MESSAGE_LAST, MESSAGE_NEXT, Columns
from recommenders.dataset import Dataset

NS_PER_DAY = 86_400 * 1_000_000_000


class SessionLogError(ValueError):
    """Events that cannot be turned into sessions; the message names the column and the rule."""


@dataclass(frozen=True, eq=False)
class SessionLog:
    """Playbacks grouped by session: row arrays of length n, session arrays of length S.

    Rows of session `s` are `offsets[s]:offsets[s + 1]`, oldest first; sessions are ordered by
    their start. Ids are external (those of the event log and the catalog).

    Attributes:
        user: (n,) int64, the listener of each row.
        track: (n,) int64, the track played.
        time: (n,) float32, the fraction listened in [0, 1].
        ts: (n,) int64, nanoseconds since the epoch.
        offsets: (S + 1,) int64, session boundaries.
        served_by: (n,) object, the recommender that answered each request (None where unknown).
    """

    user: np.ndarray
    track: np.ndarray
    time: np.ndarray
    ts: np.ndarray
    offsets: np.ndarray
    served_by: np.ndarray | None = None

    @classmethod
    def from_events(cls, events: pd.DataFrame | Dataset) -> SessionLog:
        """Sessions from the event log (a `Dataset`, or a DataFrame with `ts, user, session, message, track, time`)."""
        if isinstance(events, Dataset):
            events = events.interactions
        needed = (Columns.TS, Columns.USER, Columns.MESSAGE, Columns.TRACK, Columns.TIME)
        missing = [name for name in needed if name not in events.columns]
        if missing:
            raise SessionLogError(f"events lack column(s) {', '.join(missing)}")
        if len(events) == 0:
            return cls.empty()
        for name in (Columns.TS, Columns.USER, Columns.TRACK, Columns.TIME):
            nulls = int(events[name].isna().sum())
            if nulls:
                raise SessionLogError(f"column {name!r} has {nulls} null value(s); every event needs one")
        messages = events[Columns.MESSAGE].astype(str)
        unknown = sorted(set(messages.unique()) - {MESSAGE_NEXT, MESSAGE_LAST})
        if unknown:
            raise SessionLogError(f"column {Columns.MESSAGE!r} has value(s) {unknown}, must be {MESSAGE_NEXT!r} or {MESSAGE_LAST!r}")
        time = events[Columns.TIME].to_numpy(np.float64)
        if np.any((time < 0) | (time > 1)):
            raise SessionLogError(f"column {Columns.TIME!r} has values outside [0, 1]")
        frame = pd.DataFrame(
            {
                "user": events[Columns.USER].to_numpy(np.int64),
                "track": events[Columns.TRACK].to_numpy(np.int64),
                "time": time.astype(np.float32),
                "ts": pd.to_datetime(events[Columns.TS]).to_numpy("datetime64[ns]").view(np.int64),
                "last": (messages == MESSAGE_LAST).to_numpy(),
                "row": np.arange(len(events)),
            }
        )
        if Columns.RECOMMENDER in events.columns:
            frame["served_by"] = events[Columns.RECOMMENDER].astype(object).to_numpy()
        sessions = events[Columns.SESSION] if Columns.SESSION in events.columns else None
        if sessions is not None and not sessions.isna().any():
            frame["key"] = sessions.to_numpy(np.int64)
            frame = frame.sort_values(["user", "key", "ts", "row"], kind="stable")
            boundary = (frame["user"].diff() != 0) | (frame["key"].diff() != 0)
        else:  # no session ids: a user's session ends with its 'last' event
            frame = frame.sort_values(["user", "ts", "row"], kind="stable")
            boundary = (frame["user"].diff() != 0) | frame["last"].shift(1, fill_value=True)
        raw_session = np.cumsum(boundary.to_numpy()) - 1
        starts = np.flatnonzero(boundary.to_numpy())
        # Order sessions by start time (then user), keeping rows of a session together.
        start_ts = frame["ts"].to_numpy()[starts]
        start_user = frame["user"].to_numpy()[starts]
        order = np.lexsort((start_user, start_ts))
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        rows = np.lexsort((np.arange(len(frame)), rank[raw_session]))
        frame = frame.iloc[rows]
        lengths = np.bincount(rank[raw_session], minlength=len(starts))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return cls(
            user=frame["user"].to_numpy(np.int64),
            track=frame["track"].to_numpy(np.int64),
            time=frame["time"].to_numpy(np.float32),
            ts=frame["ts"].to_numpy(np.int64),
            offsets=offsets,
            served_by=frame["served_by"].to_numpy(object) if "served_by" in frame else None,
        )

    @classmethod
    def empty(cls) -> SessionLog:
        """A log without sessions."""
        nothing = np.zeros(0, dtype=np.int64)
        return cls(nothing, nothing, np.zeros(0, dtype=np.float32), nothing, np.zeros(1, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.track)

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @cached_property
    def session(self) -> np.ndarray:
        """(n,) int64: the session index of each row."""
        return np.repeat(np.arange(self.n_sessions), np.diff(self.offsets))

    @cached_property
    def position(self) -> np.ndarray:
        """(n,) int64: the row's position in its session, 0 for the listener's own first track."""
        return np.arange(len(self)) - self.offsets[self.session]

    @property
    def session_start(self) -> np.ndarray:
        """(S,) int64: the `ts` (ns) of each session's first event."""
        return self.ts[self.offsets[:-1]]

    @property
    def session_day(self) -> np.ndarray:
        """(S,) int64: the simulated day (days since the epoch, UTC) each session started on."""
        return self.session_start // NS_PER_DAY

    def liked(self, threshold: float) -> np.ndarray:
        """(n,) bool: rows listened to at least `threshold` of the track (a "like")."""
        return self.time >= threshold

    def select(self, sessions: np.ndarray) -> SessionLog:
        """The sessions whose indices are in `sessions` (or where the (S,) bool mask is true), in order."""
        index = np.flatnonzero(sessions) if sessions.dtype == bool else np.sort(np.asarray(sessions, dtype=np.int64))
        lengths = np.diff(self.offsets)[index]
        rows = np.repeat(self.offsets[index] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        return SessionLog(
            user=self.user[rows],
            track=self.track[rows],
            time=self.time[rows],
            ts=self.ts[rows],
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            served_by=None if self.served_by is None else self.served_by[rows],
        )

    def served(self, recommender: str) -> SessionLog:
        """The sessions whose requests were all answered by `recommender` (none when the log does not say)."""
        if self.served_by is None:
            return self.select(np.zeros(self.n_sessions, dtype=bool))
        mismatched = np.bincount(self.session, weights=(self.served_by != recommender), minlength=self.n_sessions)
        return self.select(mismatched == 0)

    def until(self, ts: int) -> SessionLog:
        """Sessions that started at or before `ts` (ns)."""
        return self.select(self.session_start <= ts)

    def after(self, ts: int) -> SessionLog:
        """Sessions that started after `ts` (ns)."""
        return self.select(self.session_start > ts)

    def split_days(self, holdout_days: int) -> tuple[SessionLog, SessionLog]:
        """(earlier days, the last `holdout_days` simulated days); holdout 0 keeps everything for training."""
        if holdout_days < 0:
            raise ValueError(f"holdout_days == {holdout_days}, must be >= 0")
        days = np.unique(self.session_day)
        if holdout_days == 0:
            return self, self.select(np.zeros(self.n_sessions, dtype=bool))
        if holdout_days >= len(days):
            raise SessionLogError(
                f"the log spans {len(days)} simulated day(s); cannot hold out the last {holdout_days} and still train"
            )
        first_test_day = days[-holdout_days]
        test = self.session_day >= first_test_day
        return self.select(~test), self.select(test)

    def to_frame(self) -> pd.DataFrame:
        """The playbacks as a DataFrame with the log's column names (`ts, user, session, track, time`)."""
        return pd.DataFrame(
            {
                Columns.TS: pd.to_datetime(self.ts, unit="ns"),
                Columns.USER: self.user,
                Columns.SESSION: self.session,
                Columns.TRACK: self.track,
                Columns.TIME: self.time.astype(np.float64),
            }
        )


def as_session_log(events: pd.DataFrame | Dataset | SessionLog, n_tracks: int) -> SessionLog:
    """`events` as sessions, checked against a catalog of `n_tracks` tracks."""
    log = events if isinstance(events, SessionLog) else SessionLog.from_events(events)
    if len(log) and (log.track.min() < 0 or log.track.max() >= n_tracks):
        raise SessionLogError(
            f"the events name track ids in [{log.track.min()}, {log.track.max()}] but the catalog has tracks 0..{n_tracks - 1}: "
            "is the world the one the log was simulated in?"
        )
    return log


def describe(log: SessionLog) -> dict[str, int | str | None]:
    """Facts about a training log that an artifact records (sizes and the period it covers)."""
    last_start = int(log.session_start.max()) if log.n_sessions else None
    return {
        "events": len(log),
        "sessions": log.n_sessions,
        "users": int(len(np.unique(log.user))),
        "days": int(len(np.unique(log.session_day))),
        "last_session_start_ns": last_start,
        "last_session_start": None if last_start is None else str(pd.Timestamp(last_start, unit="ns")),
    }


def sample_excluding(rng: np.random.Generator, n: int, excluded: np.ndarray, size: int) -> np.ndarray:
    """`size` distinct ints from [0, n) outside the sorted array `excluded` (unheard tracks, say),
    uniformly; fewer only when [0, n) runs out."""
    size = min(size, n - len(excluded))
    chosen = np.zeros(0, dtype=np.int64)
    while len(chosen) < size:
        draw = rng.integers(n, size=2 * size + 8)
        draw = draw[~np.isin(draw, excluded) & ~np.isin(draw, chosen)]
        _, first = np.unique(draw, return_index=True)
        chosen = np.concatenate([chosen, draw[np.sort(first)]])
    return chosen[:size]
