"""Logged decisions: every served recommendation with the reward it earned, read from the log.

A decision is a `next` event that served a track (`recommendation`); its reward is the listen
fraction of that track, the `time` of the session's following event, whose `track` is the
served one. The first event of a session carries the listener's own first track, chosen
before any recommendation. Off-policy evaluation (`abtest.ope`) and interleaving
(`abtest.interleaving`) start from these rows.
"""

from __future__ import annotations

import pandas as pd

from abtest.errors import AbtestError
from abtest.log import EventLog
from contracts.columns import MESSAGE_NEXT, Columns, quote


class DecisionColumns:
    """Columns of `session_events`, besides the log's own (`user`, `session`, `ts`, `track`, `time`,
    `recommendation`, `propensity`, `greedy`, `recommender`)."""

    STEP = "step"  # BIGINT: the event's position in its session, 0 first
    REWARD = "reward"  # DOUBLE: the following event's `time` (null for the session's last event)
    NEXT_TRACK = "next_track"  # BIGINT: the following event's `track`
    DECISION = "decision"  # BOOLEAN: a served recommendation whose reward was logged


def session_events(log: EventLog, experiment: str, treatment: int | None = None) -> pd.DataFrame:
    """Every event of the experiment's sessions (those of `treatment` only, when given), ordered by
    listener, session and time, with `DecisionColumns` added. Events without a session id are left out."""
    c = Columns
    window = f"OVER (PARTITION BY {quote(c.USER)}, {quote(c.SESSION)} ORDER BY {quote(c.TS)}, {quote(c.MESSAGE)} DESC)"
    greedy = quote(c.GREEDY) if c.GREEDY in log.columns else "CAST(NULL AS BIGINT)"
    propensity = quote(c.PROPENSITY) if c.PROPENSITY in log.columns else "CAST(NULL AS DOUBLE)"
    arm = f"{quote(c.EXPERIMENTS)}[?]"
    where = f"{arm} IS NOT NULL" + ("" if treatment is None else f" AND {arm} = ?")
    sql = f"""
        SELECT {quote(c.USER)}, {quote(c.SESSION)}, {quote(c.TS)}, {quote(c.MESSAGE)}, {quote(c.TRACK)}, {quote(c.TIME)},
               {quote(c.RECOMMENDATION)}, {propensity} AS {quote(c.PROPENSITY)}, {greedy} AS {quote(c.GREEDY)},
               {quote(c.RECOMMENDER)}, {arm} AS arm,
               row_number() {window} - 1 AS {DecisionColumns.STEP},
               lead({quote(c.TIME)}) {window} AS {DecisionColumns.REWARD},
               lead({quote(c.TRACK)}) {window} AS {DecisionColumns.NEXT_TRACK}
        FROM events
        WHERE {quote(c.SESSION)} IS NOT NULL AND {where}
        ORDER BY {quote(c.USER)}, {quote(c.SESSION)}, {DecisionColumns.STEP}
    """
    params: list[object] = [experiment, experiment] + ([] if treatment is None else [experiment, treatment])
    # The arm expression appears in the SELECT and the WHERE: one parameter per appearance.
    frame = log.con.execute(sql, params).df()
    if frame.empty:
        where_text = f"experiment {experiment!r}" + ("" if treatment is None else f", treatment {treatment}")
        raise AbtestError(f"no events with a session id in {where_text}")
    frame[DecisionColumns.DECISION] = (
        (frame[c.MESSAGE] == MESSAGE_NEXT)
        & frame[c.RECOMMENDATION].notna()
        & frame[DecisionColumns.REWARD].notna()
        & (frame[DecisionColumns.NEXT_TRACK] == frame[c.RECOMMENDATION])
    ).astype(bool)
    return frame
