"""`botify/Session-v0` and its vectorised form: the gymnasium contract, seeding, equivalence."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy import stats

import sim
from sim.config import EnvConfig, env_config_from_mapping
from sim.env import SessionEnv
from sim.vector_env import SessionVectorEnv
from sim.world import ConfigError, World


def test_registered_and_passes_check_env(small_world: World) -> None:
    env = gym.make(sim.ENV_ID, world=small_world)
    check_env(env.unwrapped, skip_render_check=True)
    observation, _ = env.reset(seed=1)
    assert env.observation_space.contains(observation)


def _trajectory(env: SessionEnv, seed: int, steps: int, policy_seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(policy_seed)
    observation, _ = env.reset(seed=seed)
    out = [(observation["user"], observation["track"])]
    for _ in range(steps):
        action = int(rng.integers(env.world.n_tracks)) if rng.random() < 0.5 else int(env.world.catalog.tracks_of_artist(observation["artist"])[0])
        observation, reward, terminated, truncated, _ = env.step(action)
        out.append((observation["user"], observation["track"], reward, terminated, truncated))
        if terminated or truncated:
            observation, _ = env.reset()
            out.append((observation["user"], observation["track"]))
    return out


def test_same_seed_same_episodes(small_world: World) -> None:
    first = _trajectory(SessionEnv(small_world), seed=5, steps=300)
    again = _trajectory(SessionEnv(small_world), seed=5, steps=300)
    other = _trajectory(SessionEnv(small_world), seed=6, steps=300)
    assert first == again
    assert first != other


def test_episode_index_pins_the_listener_decisions(small_world: World) -> None:
    """Common random numbers: episode e under seed s starts identically whatever came before."""
    env = SessionEnv(small_world)
    env.reset(seed=3)
    for _ in range(4):
        env.reset()
    fifth, _ = env.reset()
    replay, _ = SessionEnv(small_world).reset(seed=3, options={"episode": 5})
    assert (fifth["user"], fifth["track"]) == (replay["user"], replay["track"])


def test_step_rejects_bad_actions(small_world: World) -> None:
    env = SessionEnv(small_world)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="must be a track id"):
        env.step(small_world.n_tracks)
    with pytest.raises(ValueError, match="options\\['user'\\]"):
        env.reset(options={"user": -1})


def test_truncation_is_not_termination(small_world: World) -> None:
    """Three repeats spend three units of a budget of five: the time limit ends it, not the listener."""
    assert small_world.listeners.session_budget[0] == 5
    env = SessionEnv(small_world, env_config_from_mapping({"listener": {"max_session_steps": 3}}))
    observation, _ = env.reset(seed=0, options={"user": 0})
    outcomes = [env.step(observation["track"])[2:4] for _ in range(3)]
    assert outcomes == [(False, False), (False, False), (False, True)]
    env = SessionEnv(small_world, env_config_from_mapping({"listener": {"max_session_steps": 5}}))
    observation, _ = env.reset(seed=0, options={"user": 0})
    outcomes = [env.step(observation["track"])[2:4] for _ in range(5)]
    assert outcomes[-1] == (True, False)  # both at once: termination wins


def test_vector_env_with_one_slot_replays_the_single_env(small_world: World) -> None:
    single, vector = SessionEnv(small_world), SessionVectorEnv(1, small_world)
    s_obs, _ = single.reset(seed=9)
    v_obs, _ = vector.reset(seed=9)
    rng = np.random.default_rng(1)
    for _ in range(400):
        assert (s_obs["user"], s_obs["track"]) == (v_obs["user"][0], v_obs["track"][0])
        action = int(rng.integers(small_world.n_tracks)) if rng.random() < 0.3 else int(small_world.listeners.interest_nearest[0, rng.integers(5)])
        s_obs, s_reward, s_term, s_trunc, _ = single.step(action)
        v_obs, v_reward, v_term, v_trunc, v_info = vector.step(np.array([action]))
        assert (s_reward, s_term, s_trunc) == (v_reward[0], v_term[0], v_trunc[0])
        if s_term or s_trunc:
            assert v_info["final_obs"]["track"][0] == s_obs["track"]
            s_obs, _ = single.reset()


def test_vector_and_single_env_give_the_same_reward_distribution(small_world: World) -> None:
    """Independent seeds, a same-artist-or-random policy: session rewards agree in distribution."""
    n_sessions = 1500
    catalog = small_world.catalog

    def policy(observation: dict, rng: np.random.Generator) -> np.ndarray:
        artist = np.atleast_1d(observation["artist"])
        pick = np.array([catalog.tracks_of_artist(a)[rng.integers(len(catalog.tracks_of_artist(a)))] for a in artist])
        return np.where(rng.random(len(artist)) < 0.5, pick, rng.integers(catalog.n_tracks, size=len(artist)))

    rng = np.random.default_rng(0)
    single, totals_single = SessionEnv(small_world), []
    observation, _ = single.reset(seed=100)
    total = 0.0
    while len(totals_single) < n_sessions:
        observation, reward, terminated, truncated, _ = single.step(int(policy(observation, rng)[0]))
        total += reward
        if terminated or truncated:
            totals_single.append(total)
            total = 0.0
            observation, _ = single.reset()

    vector, totals_vector = SessionVectorEnv(64, small_world), []
    observation, _ = vector.reset(seed=200)
    running = np.zeros(64)
    while len(totals_vector) < n_sessions:
        observation, reward, terminated, truncated, _ = vector.step(policy(observation, rng))
        running += reward
        done = terminated | truncated
        totals_vector.extend(running[done].tolist())
        running[done] = 0.0
    result = stats.ks_2samp(totals_single, totals_vector[:n_sessions])
    assert result.pvalue > 0.001, (np.mean(totals_single), np.mean(totals_vector))


def test_vector_env_spaces_and_autoreset(small_world: World) -> None:
    env = SessionVectorEnv(32, small_world)
    observation, info = env.reset(seed=4)
    assert env.observation_space.contains(observation)
    assert np.array_equal(info["episode"], np.arange(32))
    repeat = observation["track"]  # repeats always spend budget: every session ends within its budget
    max_budget = int(small_world.listeners.session_budget.max())
    seen_final = False
    for _ in range(max_budget):
        observation, reward, terminated, truncated, info = env.step(repeat)
        assert (reward == 0).all()
        if terminated.any():
            seen_final = True
            assert info["_final_obs"][terminated].all()
            assert (observation["step"][terminated] == 0).all() and (observation["time"][terminated] == 1.0).all()
            assert info["episode"][terminated].min() >= 32  # new episodes were started in those slots
        repeat = np.where(terminated, observation["track"], repeat)
    assert seen_final
    with pytest.raises(ValueError, match="integer track ids"):
        env.step(np.zeros(3, dtype=np.int64))


def test_env_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="listener.popular_start"):
        env_config_from_mapping({"listener": {"popular_start": 2}})
    with pytest.raises(ConfigError, match="listener.speed: unknown key"):
        env_config_from_mapping({"listener": {"speed": 2}})
    assert EnvConfig().listener.max_session_steps == 250


def test_make_vec_builds_the_numpy_vector_env(small_world: World) -> None:
    env = gym.make_vec(sim.ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", world=small_world)
    assert isinstance(env, SessionVectorEnv)
    observation, _ = env.reset(seed=2)
    _, reward, _, _, _ = env.step(observation["track"])  # every slot repeats its first track
    assert reward.shape == (4,) and (reward == 0).all()
