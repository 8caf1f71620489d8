"""Exploration and interleaving treatments: the log's propensities are the serving probabilities.

Every expected probability is recomputed here from the probe's scores (`probe_scores`) or the
configured epsilon, independently of `recommenders.exploration`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from flask import Flask

from botify import eventlog
from botify.experiments import experiments_from_mapping
from contracts.config import ConfigError
from tests.botify.conftest import logged_rows, write_experiments
from tests.botify.probe import probe_scores

REQUESTS = 400
TEMPERATURE = 0.2
CANDIDATES = 5
EPSILON = 0.3


def served(make_app: Callable[..., Flask], path: Path, treatment: dict[str, Any]) -> list[dict]:
    """Serve REQUESTS first requests of distinct sessions (every user in `treatment`) and read the log back."""
    experiments = write_experiments(path, {"name": "explore", "serving": True, "treatments": [treatment, treatment]})
    app = make_app(experiments=experiments)
    client = app.test_client()
    for k in range(REQUESTS):
        body = {"track": (7 * k) % 500, "time": 1.0, "session": 1000 + k, "ts": 1_767_225_600_000 + 60_000 * k}
        assert client.post(f"/next/{k % 50}", json=body).status_code == 200
    return logged_rows(app, order_by="session")


def binomial_band(p: float, n: int) -> tuple[float, float]:
    """Count of successes within 4.5 binomial standard deviations of n p (a false alarm about once in 150,000 runs)."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - 4.5 * sd, n * p + 4.5 * sd


def test_softmax_propensities_are_the_softmax_of_the_top_candidates(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    treatment = {"recommender": "score_probe", "explore": {"softmax": TEMPERATURE, "candidates": CANDIDATES}}
    rows = served(make_app, tmp_path / "softmax.yml", treatment)

    assert len(rows) == REQUESTS
    greedy_probability = 0.0
    greedy_served = 0
    for row in rows:
        scores = probe_scores(row["user"], 3000).astype(np.float64)
        scores[row["track"]] = -np.inf  # the track just played is never recommended
        top = np.argsort(-scores, kind="stable")[:CANDIDATES]
        weights = np.exp((scores[top] - scores[top].max()) / TEMPERATURE)
        probabilities = weights / weights.sum()
        assert row["recommendation"] in top
        assert row["propensity"] == pytest.approx(probabilities[list(top).index(row["recommendation"])], rel=1e-6)
        assert row["greedy"] == top[0]
        greedy_probability += probabilities[0]
        greedy_served += row["recommendation"] == top[0]
    low, high = binomial_band(greedy_probability / REQUESTS, REQUESTS)
    assert low <= greedy_served <= high


def test_epsilon_propensities_mix_the_two_answers(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    # history_probe answers 1 (the history's length) on a session's first request.
    treatment = {"recommender": "score_probe", "explore": {"epsilon": EPSILON, "mix": ["history_probe"]}}
    rows = served(make_app, tmp_path / "epsilon.yml", treatment)

    explored = 0
    for row in rows:
        scores = probe_scores(row["user"], 3000).astype(np.float64)
        scores[row["track"]] = -np.inf
        greedy = int(np.argmax(scores))
        assert row["greedy"] == greedy
        assert row["recommendation"] in (greedy, 1)
        if greedy == 1:
            assert row["propensity"] == pytest.approx(1.0)
        elif row["recommendation"] == 1:
            explored += 1
            assert row["propensity"] == pytest.approx(EPSILON)
        else:
            assert row["propensity"] == pytest.approx(1 - EPSILON)
    low, high = binomial_band(EPSILON, REQUESTS)
    assert low <= explored <= high


def test_interleaving_credits_the_drafting_team(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    treatment = {"recommender": "score_probe", "interleave": "history_probe"}
    rows = served(make_app, tmp_path / "interleave.yml", treatment)

    team_a = 0
    for row in rows:
        scores = probe_scores(row["user"], 3000).astype(np.float64)
        scores[row["track"]] = -np.inf
        expected = {"score_probe": int(np.argmax(scores)), "history_probe": 1}
        assert row["recommendation"] == expected[row["recommender"]]
        assert row["propensity"] == pytest.approx(1.0 if expected["score_probe"] == 1 else 0.5)
        assert row["greedy"] is None
        team_a += row["recommender"] == "score_probe"
    low, high = binomial_band(0.5, REQUESTS)
    assert low <= team_a <= high


def test_session_interleaving_drafts_each_session_to_one_team(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    treatment = {"recommender": "score_probe", "interleave": "history_probe", "interleave_unit": "session"}
    experiments = write_experiments(tmp_path / "sessions.yml", {"name": "explore", "serving": True, "treatments": [treatment, treatment]})
    app = make_app(experiments=experiments)
    client = app.test_client()
    sessions, steps = 100, 4
    for k in range(sessions):
        track = (7 * k) % 500
        for step in range(steps):
            body = {"track": track, "time": 1.0 if step == 0 else 0.5, "session": 1000 + k, "ts": 1_767_225_600_000 + 60_000 * (steps * k + step)}
            answer = client.post(f"/next/{k % 50}", json=body)
            assert answer.status_code == 200
            track = answer.get_json()["track"]
    app.extensions[eventlog.EXTENSION].flush()
    connection = duckdb.connect(str(app.config["BOTIFY"].log), read_only=True)
    try:
        teams = connection.execute("SELECT session, list(DISTINCT recommender) FROM events GROUP BY session").fetchall()
    finally:
        connection.close()

    assert len(teams) == sessions
    assert all(len(names) == 1 for _, names in teams)
    team_a = sum(names == ["score_probe"] for _, names in teams)
    low, high = binomial_band(0.5, sessions)
    assert low <= team_a <= high


@pytest.mark.parametrize(
    ("treatment", "message"),
    [
        ({"recommender": "random", "explore": {"softmax": 1.0}}, "has none; use epsilon"),
        ({"recommender": "random", "explore": {"epsilon": 0.1}}, "needs mix"),
        ({"recommender": "random", "explore": {"softmax": 1.0, "epsilon": 0.1, "mix": ["top_pop"]}}, "exactly one of softmax"),
        ({"recommender": "random", "explore": {"softmax": -1.0}}, "softmax"),
        ({"recommender": "random", "explore": {"epsilon": 1.5, "mix": ["top_pop"]}}, "epsilon"),
        ({"recommender": "random", "interleave": "top_pop", "explore": {"epsilon": 0.1, "mix": ["top_pop"]}}, "not both"),
        ({"recommender": "random", "interleave": "random"}, "teams need two names"),
        ({"recommender": "random", "interleave": "top_pop", "interleave_unit": "day"}, "interleave_unit"),
    ],
)
def test_bad_exploration_fails_at_start_up_naming_the_rule(small_world_dir: Path, treatment: dict, message: str) -> None:
    from botify.experiments import build_experiments
    from contracts.catalog import Catalog

    data = {"experiments": [{"name": "e", "serving": True, "treatments": [treatment, {"recommender": "random"}]}]}
    with pytest.raises(ConfigError, match=message):
        build_experiments(experiments_from_mapping(data), Catalog(small_world_dir))
