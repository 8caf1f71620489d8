"""A fixed-seed event log rolled out in-process through `botify/Session-v0`, for training tests.

Sessions are served by a mix of the cold-start policies (uniformly random tracks, or tracks of
the artist just played), as on day one of the course; every request becomes one row with the
event log's columns, so the log has the real signal of the world's listeners (they listen
longer to tracks near their hidden interests). Episode e starts on simulated day
`e // ceil(episodes / days)`, spread over its first 20 hours, so a split by day is a split by episode.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from contracts.columns import EVENTS_TABLE, MESSAGE_LAST, MESSAGE_NEXT, Columns
from sim.vector_env import SessionVectorEnv
from sim.world import World

START = pd.Timestamp("2024-01-01")
STEP = pd.Timedelta(minutes=3)  # simulated time between two requests of a session
DAY_SPREAD = 20 * 3600  # seconds of a day over which its sessions start


def simulate_events(world: World, episodes: int, *, seed: int = 0, days: int = 2, sticky_share: float = 0.5, slots: int = 64) -> pd.DataFrame:
    """`episodes` sessions as an event-log DataFrame (columns `Columns.ALL`), deterministic for a seed."""
    catalog = world.catalog
    env = SessionVectorEnv(slots, world)
    observation, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    sticky = rng.random(episodes + slots) < sticky_share  # the policy of each episode
    played: list[set[int]] = [{int(track)} for track in observation["track"]]
    rows: list[tuple[object, ...]] = []
    finished = 0

    per_day = -(-episodes // days)

    def clock(episode: int, step: int) -> pd.Timestamp:
        day, index = divmod(episode, per_day)
        return START + pd.Timedelta(days=day) + pd.Timedelta(seconds=DAY_SPREAD * index / per_day) + step * STEP

    while finished < episodes:
        episode = info["episode"]
        actions = np.empty(slots, dtype=np.int64)
        for slot in range(slots):
            last = int(observation["track"][slot])
            pool = catalog.tracks_of_artist(int(catalog.artist[last])) if sticky[min(episode[slot], len(sticky) - 1)] else None
            fresh = [int(t) for t in pool if int(t) not in played[slot]] if pool is not None else []
            if fresh:
                choice = fresh[int(rng.integers(len(fresh)))]
            else:
                while (choice := int(rng.integers(catalog.n_tracks))) in played[slot]:
                    pass
            actions[slot] = choice
            played[slot].add(choice)
            if episode[slot] < episodes:
                step = int(observation["step"][slot])
                rows.append((clock(int(episode[slot]), step), int(observation["user"][slot]), int(episode[slot]), MESSAGE_NEXT,
                             last, float(observation["time"][slot, 0]), choice))
        observation, fractions, terminated, truncated, info = env.step(actions)
        for slot in np.flatnonzero(terminated | truncated):
            ended = int(episode[slot])
            if ended < episodes:
                final_step = int(info["final_info"]["steps"][slot])
                rows.append((clock(ended, final_step), int(info["final_obs"]["user"][slot]), ended, MESSAGE_LAST,
                             int(actions[slot]), float(fractions[slot]), None))
                finished += 1
            played[slot] = {int(observation["track"][slot])}
    frame = pd.DataFrame(rows, columns=[Columns.TS, Columns.USER, Columns.SESSION, Columns.MESSAGE, Columns.TRACK, Columns.TIME, Columns.RECOMMENDATION])
    frame[Columns.RECOMMENDATION] = frame[Columns.RECOMMENDATION].astype("Int64")
    frame[Columns.RECOMMENDER] = np.where(sticky[frame[Columns.SESSION].to_numpy()], "sticky_artist", "random")
    frame[Columns.LATENCY] = 0.0
    frame[Columns.EXPERIMENTS] = [{"cold_start": 0}] * len(frame)
    frame[Columns.PROPENSITY] = pd.array([None] * len(frame), dtype="Float64")
    frame[Columns.ERROR] = frame[Columns.ERROR_MESSAGE] = pd.array([None] * len(frame), dtype="string")
    frame[Columns.GREEDY] = pd.array([None] * len(frame), dtype="Int64")
    return frame.sort_values([Columns.TS, Columns.SESSION], kind="stable").reset_index(drop=True)[list(Columns.ALL)]


def write_duckdb(events: pd.DataFrame, path: str | Path) -> Path:
    """Write `events` as table `events` of a new DuckDB file at `path`."""
    path = Path(path)
    with duckdb.connect(str(path)) as connection:
        connection.register("frame", events.drop(columns=[Columns.EXPERIMENTS]))
        connection.execute(f"CREATE TABLE {EVENTS_TABLE} AS SELECT * FROM frame")
    return path
