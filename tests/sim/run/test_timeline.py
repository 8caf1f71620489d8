"""The runner's simulated time: arrivals, determinism, shards, returns and the local event log."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from contracts.catalog import Catalog
from sim import streams
from sim.config import EnvConfig, env_config_from_mapping
from sim.run.__main__ import main as run_cli
from sim.run.clients import DummyClient, Item
from sim.run.shards import ClientSpec, InlineExecutor, ShardJob, run_shard
from sim.run.timeline import DAY_S, SESSION_ID_DAY, Timeline, plan_day
from sim.world import World


def _config(world_dir: Path, **sections: object) -> EnvConfig:
    return env_config_from_mapping({"world": str(world_dir), **sections})


def _run(world: World, config: EnvConfig, seed: int = 0, episodes: int = 300, days: int = 1) -> Timeline:
    timeline = Timeline(world, config, DummyClient(world.n_tracks, seed), seed)
    for day in range(1, days + 1):
        timeline.run_day(day, episodes)
    return timeline


def test_plan_has_exact_count_and_shards_partition_it(small_world: World, small_world_dir: Path) -> None:
    config = _config(small_world_dir)
    sessions, users, arrivals = plan_day(5, 3, 1000, small_world.n_users, config)
    assert len(sessions) == 1000 and (np.diff(arrivals) >= 0).all()
    assert ((arrivals >= 2 * DAY_S) & (arrivals < 3 * DAY_S)).all() and (sessions // SESSION_ID_DAY == 3).all()
    parts = [plan_day(5, 3, 1000, small_world.n_users, config, shard, 3) for shard in range(3)]
    assert sorted(np.concatenate([p[0] for p in parts]).tolist()) == sorted(sessions.tolist())
    by_id = dict(zip(sessions.tolist(), users.tolist()))
    assert all(by_id[s] == u for p in parts for s, u in zip(p[0].tolist(), p[1].tolist()))


def test_arrivals_follow_the_daily_rhythm(small_world: World, small_world_dir: Path) -> None:
    """Rate ~ 1 + 0.6 cos(2 pi (h - 20) / 24): compare hourly counts with the expected shares."""
    config = _config(small_world_dir)
    _, _, arrivals = plan_day(1, 1, 20_000, small_world.n_users, config)
    hours = (arrivals // 3600).astype(int)
    counts = np.bincount(hours, minlength=24)
    grid = np.linspace(0, 24, 24 * 60 + 1)
    rate = 1 + 0.6 * np.cos(2 * np.pi * (grid - 20) / 24)
    expected = np.array([np.trapezoid(rate[h * 60 : h * 60 + 61], grid[h * 60 : h * 60 + 61]) for h in range(24)])
    expected = expected / expected.sum() * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-4
    assert counts[20] > 2.5 * counts[8]


def test_same_seed_same_sessions(small_world: World, small_world_dir: Path) -> None:
    config = _config(small_world_dir)
    first, again, other = _run(small_world, config, 1).records, _run(small_world, config, 1).records, _run(small_world, config, 2).records
    assert first == again
    assert first != other


class _RecordingClient(DummyClient):
    """The dummy recommender, remembering which tracks it sent to each session, in order."""

    def __init__(self, n_tracks: int, seed: int) -> None:
        super().__init__(n_tracks, seed)
        self.sent: dict[int, list[int]] = {}
        self.first: dict[int, int] = {}  # the track a session's first message says it played

    def serve(self, items: Sequence[Item]) -> list[int | None]:
        answers = super().serve(items)
        for item, answer in zip(items, answers):
            self.first.setdefault(item.session, item.track)
            if answer is not None:
                self.sent.setdefault(item.session, []).append(answer)
        return answers


def _replay(world: World, key: int, user: int, session: int, recommended: list[int]) -> tuple[int, int, float, float]:
    """The course's listener model, written out for one session with plain floats (independent of
    `ListenerModel`): first track, then per recommendation the fraction and the budget coin.

    Returns (first track, recommendations listened, sum of fractions, seconds listened).
    """
    listeners, artist = world.listeners, world.catalog.artist
    start, stop = int(listeners.interest_offsets[user]), int(listeners.interest_offsets[user + 1])
    interest = start + min(int(streams.uniform_scalar(key, user, session, streams.INTEREST) * (stop - start)), stop - start - 1)
    k = int(listeners.interest_neighbours[user])
    first = int(listeners.interest_nearest[interest, min(int(streams.uniform_scalar(key, user, session, streams.FIRST_TRACK) * k), k - 1)])
    bias, sharpness = float(listeners.consume_bias[user]), float(listeners.consume_sharpness[user])
    gamma, budget = float(listeners.artist_discount_gamma[user]), int(listeners.session_budget[user])
    vector = listeners.interests[interest].astype(np.float64)
    history, total, seconds = [first], 0.0, 0.0
    for step, track in enumerate(recommended):
        plays = sum(int(artist[h]) == int(artist[track]) for h in history)
        dot = float(world.taste[track].astype(np.float64) @ vector)
        fraction = 0.0 if track in history else round(gamma**plays / (1.0 + math.exp(-(dot - bias) * sharpness)), 2)
        total += fraction
        seconds += fraction * float(world.catalog.duration[track])
        history.append(track)
        budget -= streams.uniform_scalar(key, user, session, streams.BUDGET, step) < 1.0 - fraction
        if budget <= 0:
            return first, step + 1, total, seconds
    raise AssertionError(f"session {session}: the model would go on after {len(recommended)} recommendations")


def test_sessions_are_what_the_listener_model_says(small_world: World, small_world_dir: Path) -> None:
    """Replay the listener model by hand for sessions of a run: each session's first track, its
    length, the fractions listened and its clock follow from the tracks it was sent."""
    config, seed = _config(small_world_dir), 0
    client = _RecordingClient(small_world.n_tracks, seed)
    timeline = Timeline(small_world, config, client, seed)
    records = timeline.run_day(1, 400)
    assert len(records) == 400 and len({r.session for r in records}) == 400
    assert sorted(client.sent) == sorted(r.session for r in records)
    for record in records[:40]:
        first, tracks, total, seconds = _replay(small_world, timeline.key, record.user, record.session, client.sent[record.session])
        assert client.first[record.session] == first
        assert (record.tracks, len(client.sent[record.session])) == (tracks, tracks)
        assert record.time == pytest.approx(total, abs=1e-9)
        assert record.listened_s == pytest.approx(seconds, rel=1e-9)
        assert record.end_ts - record.start_ts == pytest.approx(seconds * 1000.0, abs=1.0)  # ms, rounded at both ends
    assert len({client.first[r.session] for r in records[:40]}) > 1  # the sessions replayed really differ
def test_batch_window_changes_nothing_but_the_batches(small_world: World, small_world_dir: Path) -> None:
    """Session clocks are exact whatever the window: with a recommender whose answers depend
    only on the session (not on the order of requests, as the dummy's do), sessions are equal."""
    records = {}
    for window in (30.0, 900.0):
        config = _config(small_world_dir, time={"batch_window_s": window})
        job = ShardJob(config, 3, (1,), 200, ClientSpec("local", "sticky_artist"))
        records[window] = sorted(run_shard(job).records, key=lambda r: r.session)
    assert records[30.0] == records[900.0]


def test_shards_give_the_single_run_sessions(small_world_dir: Path) -> None:
    config = _config(small_world_dir)
    single = run_shard(ShardJob(config, 4, (1, 2), 150, ClientSpec("local", "sticky_artist")))
    shards = InlineExecutor().map(run_shard, [ShardJob(config, 4, (1, 2), 150, ClientSpec("local", "sticky_artist"), s, 3) for s in range(3)])
    merged = sorted((r for result in shards for r in result.records), key=lambda r: r.session)
    assert merged == sorted(single.records, key=lambda r: r.session)


def test_returns_depend_on_satisfaction(small_world_dir: Path) -> None:
    returns = {"enabled": True, "base_rate_per_day": 2.0, "sensitivity": 1.0, "reference": 2.0}
    config = _config(small_world_dir, returns=returns)
    counts = {}
    for name in ("random", "sticky_artist"):
        result = run_shard(ShardJob(config, 5, (1, 2), 300, ClientSpec("local", name)))
        returning = [r for r in result.records if r.returning]
        counts[name] = len(returning)
        assert len(result.records) == 600 + len(returning)
    # sticky_artist satisfies more (longer sessions), so more listeners come back.
    assert counts["sticky_artist"] - counts["random"] > 4 * np.sqrt((counts["sticky_artist"] + counts["random"]) / 2)


def test_local_log_matches_the_simulator(small_world_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "local.duckdb"
    config = tmp_path / "env.yml"
    config.write_text(f"world: {small_world_dir}\n")
    result = CliRunner().invoke(run_cli, ["--episodes", "120", "--config", str(config), "--recommender", "local:sticky_artist", "--log", str(log), "--quiet", "--seed", "9"])
    assert result.exit_code == 0, result.output
    assert "120 sessions" in result.output and "sticky_artist" in result.output
    job = run_shard(ShardJob(env_config_from_mapping({"world": str(small_world_dir)}), 9, (1,), 120, ClientSpec("local", "sticky_artist")))
    with duckdb.connect(str(log), read_only=True) as connection:
        per_session = connection.execute(
            "SELECT session, count(*) FILTER (WHERE message = 'next'), count(*) FILTER (WHERE message = 'last') "
            "FROM events GROUP BY session ORDER BY session"
        ).fetchall()
        # Each listened recommendation's fraction arrives with the message after it; the first
        # message carries the listener's own first track with time 1.0.
        rewards = dict(connection.execute("SELECT session, sum(time) - 1.0 FROM events GROUP BY session").fetchall())
        worlds = connection.execute("SELECT fingerprint, path, tracks FROM worlds").fetchall()
        declared = connection.execute("SELECT experiment, treatment, recommender, serving FROM experiments").fetchall()
        assignments = connection.execute("SELECT DISTINCT experiments FROM events").fetchall()
    assert worlds == [(Catalog(small_world_dir).fingerprint, str(small_world_dir.absolute()), Catalog(small_world_dir).n_tracks)]
    assert declared == [("local", 0, "sticky_artist", True)] and assignments == [({"local": 0},)]
    expected = sorted(job.records, key=lambda r: r.session)
    assert per_session == [(r.session, r.tracks, 1) for r in expected]
    assert all(rewards[r.session] == pytest.approx(r.time, abs=1e-9) for r in expected)


def test_a_local_log_that_cannot_be_written_is_refused_before_the_run(small_world_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as connection:
        connection.execute("CREATE TABLE mine AS SELECT 42 AS answer")
    config = tmp_path / "env.yml"
    config.write_text(f"world: {small_world_dir}\n")

    result = CliRunner().invoke(run_cli, ["--episodes", "20", "--config", str(config), "--recommender", "local:random", "--log", str(other), "--quiet"])

    assert result.exit_code == 1
    assert "not a botify event log" in result.output and "sessions" not in result.output  # refused before simulating
    with duckdb.connect(str(other), read_only=True) as connection:
        assert connection.execute("SELECT * FROM mine").fetchall() == [(42,)]  # and left as it was
    assert not (tmp_path / "other.segments").exists()


def test_single_in_a_terminal_pauses_after_each_day(small_world_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import sim.run.__main__ as run_main

    terminal = types.SimpleNamespace(stdin=types.SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr(run_main, "sys", terminal)
    config = tmp_path / "env.yml"
    config.write_text(f"world: {small_world_dir}\n")
    args = ["--episodes", "40", "--config", str(config), "--recommender", "local:sticky_artist", "--quiet", "--start-day", "3"]

    result = CliRunner().invoke(run_cli, args, input="y\nn\n")  # go on after day 3, stop after day 4

    assert result.exit_code == 0, result.output
    assert "day 3 done" in result.output and "simulate day 4?" in result.output
    assert "day 4 done" in result.output and "simulate day 5?" in result.output
    assert "80 sessions" in result.output  # days 3 and 4, nothing of day 5

def test_cli_errors_are_clear(small_world_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(run_cli, ["--recommender", "bogus"])
    assert bad.exit_code != 0 and "local:<registry name>" in bad.output
    config = tmp_path / "env.yml"
    config.write_text(f"world: {small_world_dir}\nservice: {{port: 9}}\n")
    down = runner.invoke(run_cli, ["--config", str(config), "--episodes", "5", "--quiet"])
    assert down.exit_code != 0 and "no botify service answers at http://127.0.0.1:9" in down.output
    assert "Traceback" not in down.output
    config.write_text("servce: {port: 9}\n")
    typo = runner.invoke(run_cli, ["--config", str(config)])
    assert typo.exit_code != 0 and "servce: unknown key" in typo.output
    unknown = runner.invoke(run_cli, ["--config", str(tmp_path / "none.yml")])
    assert unknown.exit_code != 0 and "does not exist" in unknown.output


def test_summary_labels_users_by_the_serving_experiment() -> None:
    from contracts.assignment import assign
    from sim.run.summary import treatment_labels

    description = {"experiments": [{"name": "x", "serving": False, "treatments": [{"recommender": "a"}, {"recommender": "b"}]},
                                   {"name": "cold_start", "serving": True, "treatments": [{"recommender": "random"}, {"recommender": "sticky_artist"}]}]}
    labels = treatment_labels(description, np.array([1, 2, 3]))
    assert set(labels) <= {"C random", "T1 sticky_artist"}
    assert labels.tolist() == [("C random", "T1 sticky_artist")[assign("cold_start", u, 2)] for u in (1, 2, 3)]


def test_console_plays_the_timeline_s_first_listener(small_world_dir: Path, tmp_path: Path) -> None:
    """The console numbers sessions as the timeline does, so its first listener of a day is the
    timeline's listener of that day's session 0 (the service is down: track info comes from the world)."""
    from sim import streams
    from sim.env import pick_users
    from sim.run.timeline import SESSION_ID_DAY

    config = tmp_path / "env.yml"
    config.write_text(f"world: {small_world_dir}\nservice: {{port: 9}}\n")
    result = CliRunner().invoke(run_cli, ["--config", str(config), "--recommender", "console", "--seed", "4", "--start-day", "3"], input="s\nq\n")

    assert result.exit_code == 0, result.output
    expected = int(pick_users(streams.key_from_seed(4), np.array([3 * SESSION_ID_DAY]), World(small_world_dir).n_users)[0])
    assert f"listener {expected} starts with" in result.output
    assert "listened" in result.output
