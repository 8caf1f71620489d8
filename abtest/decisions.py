"""Logged decisions: every served recommendation with the reward it earned, read from the log.

A decision is a `next` event that served a track (`recommendation`); its reward is the listen
fraction of that track, the `time` of the session's following event, whose `track` is the
served one. The first event of a session carries the listener's own first track, chosen
before any recommendation. Off-policy evaluation (`abtest.ope`) and interleaving
(`abtest.interleaving`) start from these rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from abtest.errors import AbtestError
from abtest.log import EventLog
from contracts.columns import MESSAGE_LAST, MESSAGE_NEXT, Columns, quote


class DecisionColumns:
    """Columns of `session_events`, besides the log's own (`user`, `session`, `ts`, `track`, `time`,
    `recommendation`, `propensity`, `greedy`, `recommender`)."""

    STEP = "step"  # BIGINT: the event's position in its session, 0 first
    REWARD = "reward"  # DOUBLE: the following event's `time` (null for the session's last event)
    NEXT_TRACK = "next_track"  # BIGINT: the following event's `track`
    DECISION = "decision"  # BOOLEAN: a served recommendation whose reward was logged


def session_events(log: EventLog, experiment: str, treatment: int | None = None) -> pd.DataFrame:
    """Every event of the experiment's sessions (those of `treatment` only, when given), ordered by
    listener, session and time, with `DecisionColumns` added. Events without a session id are left out.

    Skips take no simulated time, so several events of a session can share a `ts`; among them the
    order is the chain of the session (each event's `track` is the previous one's `recommendation`).
    """
    c = Columns
    greedy = quote(c.GREEDY) if c.GREEDY in log.columns else "CAST(NULL AS BIGINT)"
    propensity = quote(c.PROPENSITY) if c.PROPENSITY in log.columns else "CAST(NULL AS DOUBLE)"
    arm = f"{quote(c.EXPERIMENTS)}[?]"
    where = f"{arm} IS NOT NULL" + ("" if treatment is None else f" AND {arm} = ?")
    sql = f"""
        SELECT {quote(c.USER)}, {quote(c.SESSION)}, {quote(c.TS)}, {quote(c.MESSAGE)}, {quote(c.TRACK)}, {quote(c.TIME)},
               {quote(c.RECOMMENDATION)}, {propensity} AS {quote(c.PROPENSITY)}, {greedy} AS {quote(c.GREEDY)},
               {quote(c.RECOMMENDER)}, {arm} AS arm
        FROM events
        WHERE {quote(c.SESSION)} IS NOT NULL AND {where}
        ORDER BY {quote(c.USER)}, {quote(c.SESSION)}, {quote(c.TS)}, {quote(c.MESSAGE)} = '{MESSAGE_LAST}', {quote(c.TRACK)}, {quote(c.RECOMMENDATION)}
    """
    # The arm expression appears in the SELECT and the WHERE: one parameter per appearance.
    params: list[object] = [experiment, experiment] + ([] if treatment is None else [experiment, treatment])
    frame = log.con.execute(sql, params).df()
    if frame.empty:
        where_text = f"experiment {experiment!r}" + ("" if treatment is None else f", treatment {treatment}")
        raise AbtestError(f"no events with a session id in {where_text}")
    frame = frame.iloc[_chain_order(frame)].reset_index(drop=True)
    group = frame.groupby([c.USER, c.SESSION], sort=False)
    frame[DecisionColumns.STEP] = group.cumcount()
    frame[DecisionColumns.REWARD] = group[c.TIME].shift(-1)
    frame[DecisionColumns.NEXT_TRACK] = group[c.TRACK].shift(-1)
    frame[DecisionColumns.DECISION] = (
        (frame[c.MESSAGE] == MESSAGE_NEXT)
        & frame[c.RECOMMENDATION].notna()
        & frame[DecisionColumns.REWARD].notna()
        & (frame[DecisionColumns.NEXT_TRACK] == frame[c.RECOMMENDATION])
    ).astype(bool)
    return frame


def _chain_order(frame: pd.DataFrame) -> np.ndarray:
    """Row positions of `frame` (sorted by listener, session, ts) with every run of equal
    (listener, session, ts) put in chain order: from the event whose track no other event of the
    run recommended, each next event is the one playing the previous one's recommendation.
    A run whose chain cannot be followed (a repeated track) keeps its order."""
    keys = frame[[Columns.USER, Columns.SESSION, Columns.TS]]
    tied = keys.duplicated(keep=False).to_numpy()
    order = np.arange(len(frame))
    if not tied.any():
        return order
    starts = np.flatnonzero(tied & ~keys.duplicated(keep="first").to_numpy())
    tracks = frame[Columns.TRACK].to_numpy()
    recommendations = frame[Columns.RECOMMENDATION].to_numpy()
    for start in starts:
        stop = start + 1
        while stop < len(frame) and tied[stop] and keys.iloc[stop].equals(keys.iloc[start]):
            stop += 1
        run = list(range(start, stop))
        by_track = {int(tracks[i]): i for i in run}
        recommended = {int(recommendations[i]) for i in run if not pd.isna(recommendations[i])}
        first = [i for i in run if int(tracks[i]) not in recommended]
        if len(by_track) != len(run) or len(first) != 1:
            continue
        chain = [first[0]]
        while len(chain) < len(run):
            following = recommendations[chain[-1]]
            if pd.isna(following) or int(following) not in by_track or by_track[int(following)] in chain:
                break
            chain.append(by_track[int(following)])
        if len(chain) == len(run):
            order[start:stop] = chain
    return order
