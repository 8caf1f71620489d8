"""Reference policies for `botify/Session-v0`: random, same-artist and oracle.

They give the environment's sanity ordering (oracle > same artist > random) and the trivial
policy of the benchmarks. A policy is told when a session begins and then asked for tracks.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from contracts.catalog import Catalog
from sim.oracle import Oracle


class Policy(Protocol):
    """Chooses the next track from the observation of one session."""

    def begin(self, observation: dict[str, Any]) -> None: ...

    def act(self, observation: dict[str, Any]) -> int: ...


class RandomPolicy:
    """A uniformly random track, avoiding tracks already played in the session."""

    def __init__(self, catalog: Catalog, seed: int = 0) -> None:
        self._n = catalog.n_tracks
        self._rng = np.random.default_rng(seed)
        self._played: set[int] = set()

    def begin(self, observation: dict[str, Any]) -> None:
        self._played = {int(observation["track"])}

    def act(self, observation: dict[str, Any]) -> int:
        while (track := int(self._rng.integers(self._n))) in self._played:
            pass
        self._played.add(track)
        return track


class SameArtistPolicy(RandomPolicy):
    """An unplayed track of the artist just played (StickyArtist); random when there is none."""

    def __init__(self, catalog: Catalog, seed: int = 0) -> None:
        super().__init__(catalog, seed)
        self._catalog = catalog

    def act(self, observation: dict[str, Any]) -> int:
        tracks = self._catalog.tracks_of_artist(int(observation["artist"]))
        fresh = [int(t) for t in tracks if int(t) not in self._played]
        if not fresh:
            return super().act(observation)
        track = fresh[int(self._rng.integers(len(fresh)))]
        self._played.add(track)
        return track


class OraclePolicy:
    """The unplayed track of highest hidden affinity with the session's interest (upper bound)."""

    def __init__(self, oracle: Oracle, horizon: int = 512) -> None:
        self._oracle = oracle
        self._horizon = horizon
        self._ranking: list[int] = []
        self._played: set[int] = set()

    def begin(self, observation: dict[str, Any]) -> None:
        first = int(observation["track"])
        interest = self._oracle.session_interest(int(observation["user"]), first)
        self._ranking = [int(t) for t in self._oracle.best_tracks(interest, self._horizon)][::-1]
        self._played = {first}

    def act(self, observation: dict[str, Any]) -> int:
        while self._ranking:
            track = self._ranking.pop()
            if track not in self._played:
                self._played.add(track)
                return track
        raise RuntimeError(f"oracle ran out of its {self._horizon}-track horizon; raise `horizon`")


def rollout(env: Any, policy: Policy, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Play `episodes` sessions of `env` with `policy`; per-episode steps, total reward and user."""
    steps, rewards, users = np.zeros(episodes, dtype=np.int64), np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    observation, _ = env.reset(seed=seed)
    for episode in range(episodes):
        if episode:
            observation, _ = env.reset()
        users[episode] = observation["user"]
        policy.begin(observation)
        done = False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy.act(observation))
            steps[episode] += 1
            rewards[episode] += reward
            done = terminated or truncated
    return {"steps": steps, "reward": rewards, "user": users}
