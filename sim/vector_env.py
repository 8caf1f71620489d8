"""`SessionVectorEnv`: many sessions of `botify/Session-v0` stepped at once with numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sim.config import EnvConfig
from sim.env import WorldLike, load_world, observation_space, pick_users
from sim.listener import ListenerModel


class SessionVectorEnv(VectorEnv):
    """`num_envs` concurrent sessions, same dynamics as `SessionEnv`, one numpy pass per step.

    Spaces: `single_observation_space` / `single_action_space` are `SessionEnv`'s; the batched
    `observation_space` is a `Dict` of arrays of length `num_envs` and `action_space` is
    `MultiDiscrete([n_tracks] * num_envs)`.

    Autoreset (`AutoresetMode.SAME_STEP`): when a session ends, the same `step` call starts the
    next episode in that slot and returns its first observation; the ended session's last
    observation and info are in `info["final_obs"]` / `info["final_info"]`, masked by
    `info["_final_obs"]`. Rewards, `terminated` and `truncated` belong to the ended session.

    Episodes are numbered in start order (slots 0..n-1 first, then ended slots by index), and
    a session's random draws are keyed by (listener, episode): with `num_envs=1` this env
    replays `SessionEnv` under the same seed step for step.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int, world: WorldLike = "data/world", config: EnvConfig | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs == {num_envs}, must be >= 1")
        self.world = load_world(world)
        self.config = config or EnvConfig()
        self.num_envs = num_envs
        self.max_steps = self.config.listener.max_session_steps
        self.single_observation_space = observation_space(self.world, self.max_steps)
        self.single_action_space = spaces.Discrete(self.world.n_tracks)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._artist = self.world.catalog.artist
        self._duration = self.world.catalog.duration
        self._model: ListenerModel | None = None
        self._key = 0
        self._next_episode = 0
        self._time = np.ones(num_envs, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a fresh episode in every slot (options are not supported here)."""
        if options:
            raise ValueError(f"SessionVectorEnv.reset takes no options, got {sorted(options)}")
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._key = int(self.np_random.integers(0, 2**63))
        self._model = ListenerModel.from_options(self.world, self.num_envs, self._key, self.config.listener)
        self._next_episode = 0
        self._start(np.arange(self.num_envs))
        return self._observation(), {"episode": self._model.episode.copy()}

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        model = self._model
        if model is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be {self.num_envs} integer track ids, got shape {actions.shape} dtype {actions.dtype}")
        if actions.min() < 0 or actions.max() >= self.world.n_tracks:
            raise ValueError(f"actions must be track ids in [0, {self.world.n_tracks}), got range [{actions.min()}, {actions.max()}]")
        fractions, terminated = model.respond(actions)
        truncated = ~terminated & (model.step >= self.max_steps)
        self._time = fractions.astype(np.float32)
        info: dict[str, Any] = {"listened": fractions * self._duration[actions], "episode": model.episode.copy()}
        done = np.flatnonzero(terminated | truncated)
        if len(done):
            final_obs = self._observation()
            info["final_obs"] = final_obs
            info["_final_obs"] = terminated | truncated
            info["final_info"] = {"episode": model.episode.copy(), "steps": model.step.copy()}
            self._start(done)
            info["episode"] = model.episode.copy()
        return self._observation(), fractions, terminated, truncated, info

    def _start(self, slots: np.ndarray) -> None:
        assert self._model is not None
        episodes = self._next_episode + np.arange(len(slots))
        self._next_episode += len(slots)
        self._model.start(slots, pick_users(self._key, episodes, self.world.n_users), episodes)
        self._time[slots] = 1.0

    def _observation(self) -> dict[str, np.ndarray]:
        assert self._model is not None
        track = self._model.track.copy()
        return {
            "user": self._model.user.copy(),
            "track": track,
            "artist": self._artist[track].astype(np.int64),
            "time": self._time[:, None].copy(),
            "step": self._model.step.copy(),
        }

