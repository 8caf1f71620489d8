"""Synthetic event logs with known effects, generated inside DuckDB (10^7 events in seconds).

The log starts on 2026-01-01, simulated day 1 as `sim.run` and the service count it. The
scenario: listeners arrive in sessions of about `tracks_per_session` tracks (geometric
lengths, each user with their own mean), a few hours apart, so one user's sessions never
overlap. Every user is assigned to each experiment's treatments with equal probability. A
treatment's effect multiplies the fraction listened of every track of its users by
1 + effect, so the true relative effect on `time` and `mean_time_per_session` is exactly the
effect, and on sessions and tracks per session it is exactly 0. Effects of different
experiments multiply, so one log can hold many independent experiments with known truth.

All randomness comes from chained DuckDB `hash`es of (seed, ids), so the same seed gives the same log.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from abtest.errors import AbtestError
from contracts.columns import DUCKDB_TYPES, EVENTS_TABLE, EXPERIMENTS_TABLE, MESSAGE_LAST, MESSAGE_NEXT, Columns, create_table_sql, quote, sql_string

SESSION_GAP_H = 8  # hours between a user's consecutive session starts
TRACK_GAP_S = 180  # seconds between tracks of a session
BASE_LATENCY_S = 0.002  # seconds; serving latency is 2-4 ms
CATALOG = 50_000  # track ids drawn from range(CATALOG)


@dataclass(frozen=True)
class SyntheticExperiment:
    """An experiment of the synthetic log.

    Attributes:
        name: Experiment name (key of the `experiments` map).
        effects: Relative effect on listening time per treatment; effects[0] belongs to the control.
        latency_effects: Relative effect on latency per treatment (None: no effect).
    """

    name: str
    effects: tuple[float, ...] = (0.0, 0.0)
    latency_effects: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not 2 <= len(self.effects) <= 10:
            raise AbtestError(f"effects has {len(self.effects)} treatments, must have 2..10")
        if any(e <= -1 for e in self.effects):
            raise AbtestError(f"effects == {self.effects}, each must be > -1")
        if self.latency_effects is not None and len(self.latency_effects) != len(self.effects):
            raise AbtestError("latency_effects must have one entry per treatment, like effects")


def _mix(base: str, *parts: str) -> str:
    """SQL for a well-mixed 64-bit hash of the hash `base` and `parts`, chaining DuckDB's one-argument `hash`.

    DuckDB's multi-argument hash combines its arguments too simply for simulation (the hashes
    of (u, 1) and (u, 2) have correlated low bits), so each part is folded in and re-hashed.
    """
    sql = base
    for part in parts:
        sql = f"hash(xor({sql}, ({part})::UBIGINT))"
    return sql


def _uniform(base: str, *parts: str) -> str:
    """SQL for a uniform number in (0, 1) from the hash of (base, parts)."""
    return f"((({_mix(base, *parts)} >> 11)::DOUBLE + 0.5) / 9007199254740992.0)"


def events_query(
    events: int,
    experiments: Sequence[SyntheticExperiment],
    *,
    tracks_per_session: float = 10.0,
    sessions_per_user: float = 5.0,
    seed: int = 0,
    session_ids: bool = True,
    start: dt.datetime = dt.datetime(2026, 1, 1),
) -> str:
    """SQL that yields about `events` rows with the event log's columns and types."""
    if events < 1:
        raise AbtestError(f"events == {events}, must be >= 1")
    if tracks_per_session < 1 or sessions_per_user <= 0:
        raise AbtestError("tracks_per_session must be >= 1 and sessions_per_user > 0")
    if not experiments:
        raise AbtestError("experiments is empty, a log needs at least one experiment")
    sessions = max(1, round(events / tracks_per_session))
    users = max(1, round(sessions / sessions_per_user))
    max_gain = math.prod(max(1 + e for e in x.effects) for x in experiments)
    arm_cols = ", ".join(f"({_mix('hu', str(1000 + k))} % {len(x.effects)})::INTEGER AS a{k}" for k, x in enumerate(experiments))
    gain = " * ".join(
        "CASE " + " ".join(f"WHEN a{k} = {i} THEN {1 + e!r}::DOUBLE" for i, e in enumerate(x.effects)) + " END"
        for k, x in enumerate(experiments)
    )
    lat_gain = " * ".join(
        ["1.0"]
        + [
            "CASE " + " ".join(f"WHEN a{k} = {i} THEN {1 + e!r}::DOUBLE" for i, e in enumerate(x.latency_effects)) + " END"
            for k, x in enumerate(experiments)
            if x.latency_effects is not None
        ]
    )
    names = ", ".join("'" + x.name.replace("'", "''") + "'" for x in experiments)
    arms = ", ".join(f"a{k}" for k in range(len(experiments)))
    c = Columns
    t = DUCKDB_TYPES
    root = f"hash({int(seed)})"
    # Hashes are chained per level (hu: user, hs: session, he: event) so each row hashes few times.
    # p of the geometric session length: mean length per user is tracks_per_session * (0.5 .. 1.5).
    return f"""
        WITH s AS (
            SELECT range AS sid, {_mix(root, "range", "1")} % {users} AS user FROM range({sessions})
        ), u AS (
            SELECT sid, user, {_mix(root, "user")} AS hu, {_mix(root, "sid", "2")} AS hs,
                   row_number() OVER (PARTITION BY user ORDER BY sid) - 1 AS rank
            FROM s
        ), l AS (
            SELECT *,
                   greatest(1.0, {tracks_per_session} * (0.5 + {_uniform("hu", "2")})) AS mean_len,
                   (0.3 + 0.6 * {_uniform("hu", "3")}) / {max_gain!r} AS taste,
                   {arm_cols}
            FROM u
        ), g AS (
            SELECT *, 1 + floor(ln({_uniform("hs", "4")}) / ln(1 - 1 / (mean_len + 1e-9)))::BIGINT AS len,
                   {gain} AS gain, {lat_gain} AS lat_gain,
                   MAP([{names}], [{arms}])::{t[c.EXPERIMENTS]} AS assignment
            FROM l
        ), e AS (
            SELECT *, unnest(range(len)) AS i FROM g
        ), h AS (
            SELECT *, {_mix("hs", "i")} AS he FROM e
        )
        SELECT (TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}'
                + to_seconds(({_mix("hu", "5")} % 21600)::BIGINT + rank * {SESSION_GAP_H * 3600}
                             + ({_mix("hs", "6")} % 3600)::BIGINT + i * {TRACK_GAP_S}))::{t[c.TS]} AS {quote(c.TS)},
               user::{t[c.USER]} AS {quote(c.USER)},
               {"sid" if session_ids else "NULL"}::{t[c.SESSION]} AS {quote(c.SESSION)},
               (CASE WHEN i = len - 1 THEN '{MESSAGE_LAST}' ELSE '{MESSAGE_NEXT}' END)::{t[c.MESSAGE]} AS {quote(c.MESSAGE)},
               ({_mix("he", "7")} % {CATALOG})::{t[c.TRACK]} AS {quote(c.TRACK)},
               (taste * {_uniform("he", "8")} * gain)::{t[c.TIME]} AS {quote(c.TIME)},
               (CASE WHEN i = len - 1 THEN NULL ELSE {_mix("he", "9")} % {CATALOG} END)::{t[c.RECOMMENDATION]}
                   AS {quote(c.RECOMMENDATION)},
               ('rec' || a0::VARCHAR)::{t[c.RECOMMENDER]} AS {quote(c.RECOMMENDER)},
               ({BASE_LATENCY_S} * (1 + {_uniform("he", "10")} ^ 2) * lat_gain)::{t[c.LATENCY]}
                   AS {quote(c.LATENCY)},
               assignment AS {quote(c.EXPERIMENTS)},
               NULL::{t[c.PROPENSITY]} AS {quote(c.PROPENSITY)}
        FROM h"""


def write_synthetic_log(
    path: str | Path,
    events: int,
    experiments: Sequence[SyntheticExperiment] = (SyntheticExperiment("exp", (0.0, 0.0, 0.0)),),
    *,
    tracks_per_session: float = 10.0,
    sessions_per_user: float = 5.0,
    seed: int = 0,
    session_ids: bool = True,
    declare: bool = True,
    parquet: bool = False,
) -> Path:
    """Write a synthetic log of about `events` events and return its path.

    Args:
        path: DuckDB file to create (replaced if it exists), or Parquet file when `parquet`.
        events: Approximate number of events (sessions have random lengths).
        experiments: Experiments, each with its effects per treatment.
        tracks_per_session: Mean session length (geometric, per-user means vary by +-50%).
        sessions_per_user: Mean sessions per user.
        seed: Seed of all randomness.
        session_ids: Log session ids (as the newer client does); False logs NULL (course client).
        declare: Also write the `experiments` table (every experiment serving, equal split).
        parquet: Write the events as one Parquet file instead of a DuckDB database.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    sql = events_query(
        events,
        experiments,
        tracks_per_session=tracks_per_session,
        sessions_per_user=sessions_per_user,
        seed=seed,
        session_ids=session_ids,
    )
    con = duckdb.connect() if parquet else duckdb.connect(str(path))
    con.execute("SET enable_progress_bar = false")
    try:
        if parquet:
            con.execute(f"COPY ({sql}) TO {sql_string(str(path))} (FORMAT parquet)")
            return path
        con.execute(f"CREATE TABLE {EVENTS_TABLE} AS {sql}")
        if declare:
            con.execute(create_table_sql(EXPERIMENTS_TABLE))
            rows = [
                (x.name, i, f"rec{i}" if k == 0 else None, True, dt.datetime(2026, 1, 1))
                for k, x in enumerate(experiments)
                for i in range(len(x.effects))
            ]
            con.executemany(f"INSERT INTO {EXPERIMENTS_TABLE} VALUES (?, ?, ?, ?, ?)", rows)
    finally:
        con.close()
    return path


def write_synthetic_segments(
    log: str | Path,
    events: int,
    experiments: Sequence[SyntheticExperiment] = (SyntheticExperiment("exp", (0.0, 0.0, 0.0)),),
    *,
    segments: int = 100,
    held_back: int = 0,
    seed: int = 0,
    session_ids: bool = True,
) -> list[Path]:
    """Write a synthetic log in the form `botify serve` writes one: LOG, a DuckDB file of views over
    sealed Parquet segments (`contracts.eventlog.layout`), with the events cut by time into `segments`
    segments of the declared columns (those the generator lacks are NULL).

    Each segment is sealed as the service seals one (`contracts.eventlog.rollup.seal`: the segment,
    its summary beside it, a rollup of the summaries when one is due). The last `held_back` segments are written into `<segments>/held/`
    instead, outside the log; their paths are returned, in time order, so that a caller can seal
    them later with `release`, as a running service seals its next segments. Replaces an existing log.
    """
    from contracts.eventlog import init_log  # the log's layout, only for this form
    from contracts.eventlog.layout import arrow_schemas
    from contracts.eventlog.rollup import seal

    schema = arrow_schemas()[EVENTS_TABLE]

    if not 1 <= segments or not 0 <= held_back < segments:
        raise AbtestError(f"segments == {segments}, held_back == {held_back}: need segments >= 1 and 0 <= held_back < segments")
    layout = init_log(log, reset=True)
    directory = layout.directory(EVENTS_TABLE)
    held = layout.segments / "held"
    held.mkdir(exist_ok=True)
    for stale in held.iterdir():
        stale.unlink()
    sql = events_query(events, experiments, seed=seed, session_ids=session_ids)
    generated = duckdb.connect()
    try:
        generated.execute("SET enable_progress_bar = false")
        generated.execute(f"CREATE TEMP TABLE generated AS SELECT *, ntile({int(segments)}) OVER (ORDER BY {quote(Columns.TS)}) AS part FROM ({sql})")
        have = {row[0] for row in generated.execute("DESCRIBE generated").fetchall()}
        columns = ", ".join(
            quote(name) if name in have else f"NULL::{kind} AS {quote(name)}" for name, kind in DUCKDB_TYPES.items()
        )
        out = []
        for part in range(1, segments + 1):
            name = f"{part:019d}-synthetic.parquet"
            target = held if part > segments - held_back else directory
            table = generated.sql(f"SELECT {columns} FROM generated WHERE part = {part}").to_arrow_table().cast(schema)
            seal(target, name, table)  # the service's seal: the segment, then its summary beside it
            if target == held:
                out.append(target / name)
    finally:
        generated.close()
    return out


def release(segment: Path, log: str | Path) -> Path:
    """Move a segment held back by `write_synthetic_segments` into the log, its summary first
    (renames keep the size and time it records), as the service seals its next segment."""
    from contracts.eventlog.layout import LogLayout
    from contracts.eventlog.summary import summary_path

    directory = LogLayout.of(log).directory(EVENTS_TABLE)
    if summary_path(segment).exists():
        os.replace(summary_path(segment), summary_path(directory / segment.name))
    os.replace(segment, directory / segment.name)
    return directory / segment.name
