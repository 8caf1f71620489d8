"""Sanity of the world: an oracle beats StickyArtist, which beats random, in session length."""

from __future__ import annotations

import numpy as np
from scipy import stats

from sim.env import SessionEnv
from sim.oracle import Oracle
from sim.policies import OraclePolicy, RandomPolicy, SameArtistPolicy, rollout
from sim.world import World

EPISODES = 600


def test_oracle_beats_same_artist_beats_random(small_world: World) -> None:
    env = SessionEnv(small_world)
    results = {
        name: rollout(env, policy, EPISODES, seed=11)["steps"]
        for name, policy in (
            ("random", RandomPolicy(small_world.catalog, seed=1)),
            ("same_artist", SameArtistPolicy(small_world.catalog, seed=1)),
            ("oracle", OraclePolicy(Oracle(small_world))),
        )
    }
    for name, steps in results.items():
        print(f"{name:>12}: mean session length {steps.mean():.2f} +- {steps.std(ddof=1) / np.sqrt(len(steps)):.2f} tracks")
    # Same seed, same episodes: paired differences; one-sided t-tests at a strict level.
    for better, worse in (("oracle", "same_artist"), ("same_artist", "random")):
        test = stats.ttest_rel(results[better], results[worse], alternative="greater")
        assert test.pvalue < 1e-6, (better, worse, results[better].mean(), results[worse].mean())
