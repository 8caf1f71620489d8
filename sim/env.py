"""`botify/Session-v0`: one listening session as a gymnasium environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim import streams
from sim.config import EnvConfig
from sim.listener import ListenerModel
from sim.world import World

WorldLike = World | str | Path


def load_world(world: WorldLike) -> World:
    """Accept a loaded `World` or a world directory."""
    return world if isinstance(world, World) else World(world)


def observation_space(world: World, max_steps: int) -> spaces.Dict:
    """The observation of one session (see `SessionEnv`)."""
    return spaces.Dict(
        {
            "user": spaces.Discrete(world.n_users),
            "track": spaces.Discrete(world.n_tracks),
            "artist": spaces.Discrete(world.catalog.n_artists),
            "time": spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32),
            "step": spaces.Discrete(max_steps + 1),
        }
    )


def pick_users(key: int, episodes: np.ndarray, n_users: int) -> np.ndarray:
    """The listener of each episode: a common random number of the episode index."""
    return streams.choice_index(streams.uniform(key, episodes, streams.USER), n_users)


class SessionEnv(gym.Env[dict[str, Any], int]):
    """One listener's session: the agent recommends tracks, the listener listens or leaves.

    ## Description

    A simulated listener starts a session from one of their hidden interests with a first
    track of their own choice. At every step the agent (a recommender) names the next track;
    the listener plays a fraction of it according to the course's listener model
    (`sim.listener.ListenerModel`) and the session's budget may drop. The world (catalog and
    listeners) is fixed by the world directory; which listener comes, and every coin they
    toss, comes from the seed.

    ## Action Space

    `Discrete(n_tracks)`: the id of the recommended track.

    ## Observation Space

    A `Dict`:

    | key      | meaning                                        | bounds              |
    |----------|------------------------------------------------|---------------------|
    | `user`   | the listener's id                              | 0 .. n_users - 1    |
    | `track`  | the track just played                          | 0 .. n_tracks - 1   |
    | `artist` | its artist                                     | 0 .. n_artists - 1  |
    | `time`   | fraction of it listened (1.0 for the first)    | [0, 1], shape (1,)  |
    | `step`   | recommendations answered so far this session   | 0 .. max_steps      |

    ## Rewards

    The fraction of the recommended track listened, in [0, 1] (0 for a repeat).
    `info["listened"]` gives it in seconds (fraction times the track's duration).

    ## Starting State

    A listener drawn uniformly (or `options["user"]`), one of their interests, and a first
    track among that interest's nearest tracks.

    ## Episode End

    1. Termination: the listener's session budget reaches 0 (they leave).
    2. Truncation: `max_session_steps` recommendations were answered (the time limit).

    ## Arguments

    - `world`: a `World` or a world directory (default `data/world`).
    - `config`: an `EnvConfig` (listener options); defaults are the course's model.

    `reset(options={"user": u, "episode": e})` pins the listener and the episode index; the
    episode index keys the common random numbers, so the same (seed, episode) replays the same
    listener decisions under any recommender.

    ## Example

    >>> env = gym.make("botify/Session-v0", world=world_dir)  # doctest: +SKIP
    >>> obs, info = env.reset(seed=7)                          # doctest: +SKIP
    >>> obs, reward, terminated, truncated, info = env.step(obs["track"])  # doctest: +SKIP
    >>> reward  # a repeat is never listened                    # doctest: +SKIP
    0.0
    """

    metadata = {"render_modes": []}

    def __init__(self, world: WorldLike = "data/world", config: EnvConfig | None = None) -> None:
        self.world = load_world(world)
        self.config = config or EnvConfig()
        options = self.config.listener
        self.max_steps = options.max_session_steps
        self.observation_space = observation_space(self.world, self.max_steps)
        self.action_space = spaces.Discrete(self.world.n_tracks)  # type: ignore[assignment]
        self._model: ListenerModel | None = None
        self._key = 0
        self._next_episode = 0
        self._duration = self.world.catalog.duration

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or self._model is None:
            self._key = int(self.np_random.integers(0, 2**63))
            self._next_episode = 0
            self._model = ListenerModel.from_options(self.world, 1, self._key, self.config.listener)
        options = options or {}
        episode = int(options.get("episode", self._next_episode))
        self._next_episode = episode + 1
        if "user" in options:
            user = int(options["user"])
            if not 0 <= user < self.world.n_users:
                raise ValueError(f"options['user'] == {user}, must be in [0, {self.world.n_users})")
        else:
            user = int(pick_users(self._key, np.array([episode]), self.world.n_users)[0])
        first = int(self._model.start(np.array([0]), np.array([user]), np.array([episode]))[0])
        return self._observation(first, 1.0), {"episode": episode}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self._model is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        track = int(action)
        if not self.action_space.contains(track):
            raise ValueError(f"action == {action!r}, must be a track id in [0, {self.world.n_tracks})")
        fractions, ended = self._model.respond(np.array([track]))
        fraction = float(fractions[0])
        terminated = bool(ended[0])
        truncated = not terminated and int(self._model.step[0]) >= self.max_steps
        info = {"episode": int(self._model.episode[0]), "listened": fraction * float(self._duration[track])}
        return self._observation(track, fraction), fraction, terminated, truncated, info

    def _observation(self, track: int, fraction: float) -> dict[str, Any]:
        assert self._model is not None
        return {
            "user": int(self._model.user[0]),
            "track": track,
            "artist": int(self.world.catalog.artist[track]),
            "time": np.array([fraction], dtype=np.float32),
            "step": int(self._model.step[0]),
        }
