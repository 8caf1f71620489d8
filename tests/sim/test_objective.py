"""The online objective of `recommenders tune`: paired simulation with common random numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from recommenders.tuning import online_objective
from sim.config import EnvConfig
from sim.objective import online_effect, simulation_day

STICKY = {"name": "sticky_artist", "params": {}, "artifact": None}
RANDOM = {"name": "random", "params": {}, "artifact": None}
DAY = dt.date(2026, 1, 2)


def test_a_recommender_against_itself_is_exactly_zero(small_world_dir: Path) -> None:
    result = online_effect(small_world_dir, STICKY, dict(STICKY), date=DAY, seed=11, episodes=120)
    assert result["effect"] == 0.0 and result["difference"] == 0.0
    assert result["treatment"] == result["control"] > 1.0 and result["users"] > 50


def test_a_worse_recommender_loses_time(small_world_dir: Path) -> None:
    # Random tracks are far from a listener's taste; sticky_artist stays near the session's artist.
    result = online_effect(small_world_dir, RANDOM, STICKY, date=DAY, seed=11, episodes=120)
    assert result["effect"] < -0.1 and result["treatment"] < result["control"]
    again = online_effect(small_world_dir, RANDOM, STICKY, date=DAY, seed=11, episodes=120)
    assert again == result  # same seed, same result


def test_the_recommenders_package_reaches_it_by_entry_point() -> None:
    assert online_objective() is online_effect


def test_days_count_from_the_configs_start() -> None:
    config = EnvConfig()
    assert simulation_day(config, dt.date(2026, 1, 2)) == (config, 2)
    moved, day = simulation_day(config, dt.date(2024, 1, 2))
    assert day == 1 and moved.time.start == dt.date(2024, 1, 2)
