"""What a session's length counts, defined once for the log, `abtest`, the simulator's summary and its truth.

The listener picks a session's first track themselves and the client sends it with the first
`/next` and `time` 1.0 (the course's protocol); every later event carries a recommended track
and the fraction listened. So a session's *tracks* are its events ('next' and 'last'), the first,
unrecommended track included, and its *time* is the sum of their `time`: the first track counts
as one track listened in full. `abtest` counts this way from the log (`abtest.sessionize`).

The simulator's `SessionRecord` keeps the recommended tracks apart (`tracks`, `time`: what a
recommender could change); `logged_tracks` and `logged_time` turn them into the log's counts, so
that `python -m sim.run`'s summary, the truth file and the gate report what `abtest` reports.
Because the first track adds the same 1.0 under every arm, a relative effect on the logged time
is smaller than on the recommended tracks' time alone (e.g. +23% against +33% on one run).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

FIRST_TRACK_TIME = 1.0  # tracks: the `time` the client sends with a session's first, self-chosen track

Count = TypeVar("Count", int, np.ndarray)
Time = TypeVar("Time", float, np.ndarray)


def logged_tracks(recommended: Count) -> Count:
    """A session's tracks as the log counts them, from the number of recommended tracks played."""
    return recommended + 1


def logged_time(recommended: Time) -> Time:
    """A session's time as the log sums it, from the fractions listened of the recommended tracks."""
    return recommended + FIRST_TRACK_TIME
