"""Serving the learned models: artifacts round-trip, answers follow the session, no repeats, cold fallbacks, the service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
import requests
import yaml

from contracts.catalog import Catalog
from recommenders import registry
from recommenders.base import NotFittedError, Request, RequestBatch
from recommenders.evaluation import build_cases
from recommenders.models.artifacts import ArtifactError
from recommenders.models.bpr_knn import BPRKNNRecommender
from recommenders.models.dssm import DSSMRecommender
from recommenders.models.ranking import Context
from recommenders.models.sessions import SessionLog

NAMES = ("dssm", "bpr_knn")
REPO = Path(__file__).resolve().parents[3]  # `python -m botify` from here runs this checkout


def _test_requests(split_log: tuple[SessionLog, SessionLog], catalog: Catalog) -> list[Request]:
    return build_cases(*split_log, catalog.n_tracks, 0.5).requests


@pytest.mark.parametrize("name", NAMES)
def test_artifacts_round_trip(name: str, fitted: dict[str, Any], artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog, tmp_path: Path) -> None:
    loaded = registry.make(name, small_catalog, {}, artifacts[name])
    again = registry.make(name, small_catalog, {}, loaded.save(tmp_path / "copy"))
    batch = _test_requests(split_log, small_catalog)
    # Fitted, loaded and re-saved models must agree: state that `save` drops, or that `load`
    # rebuilds differently from `fit`, changes the rankings.
    assert np.array_equal(fitted[name].rank(batch, 10), loaded.rank(batch, 10))
    assert np.array_equal(loaded.rank(batch, 10), again.rank(batch, 10))
    candidates = np.tile(np.arange(20), (len(batch), 1))
    np.testing.assert_allclose(fitted[name].score(batch, candidates), loaded.score(batch, candidates), rtol=1e-6)
    assert np.array_equal(loaded.score(batch, candidates), again.score(batch, candidates))
    assert [r.track for r in loaded.recommend_batch(batch)] == [loaded.recommend(r).track for r in batch]


def test_artifacts_are_checked(artifacts: dict[str, Path], small_catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="holds a 'bpr_knn' model, not 'dssm'"):
        DSSMRecommender(small_catalog).load(artifacts["bpr_knn"])
    with pytest.raises(ArtifactError, match="model.json is missing"):
        BPRKNNRecommender(small_catalog).load(tmp_path)
    with pytest.raises(NotFittedError):
        DSSMRecommender(small_catalog).recommend(Request(user=1, track=0, time=1.0))
    with pytest.raises(NotFittedError):
        BPRKNNRecommender(small_catalog).save(tmp_path / "nothing")


# Sessions the service may send: none yet, one that does not end with the track just played, times
# missing, a day, tracks and users outside the catalog and the vocabulary.
ODD_REQUESTS = [
    Request(5, 3, 0.4),
    Request(6, 7, 0.3, (1, 2), (0.5, 0.6)),
    Request(7, 9, 0.2, (4, 9), ()),
    Request(8, 11, 0.9, (11,), (0.1,), 0, 3),
    Request(2**62, 10**7, 0.5, (10**7 + 1, 1), (0.2, 0.3)),
]


def test_a_request_batch_gives_the_context_of_its_requests(split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog) -> None:
    requests = [*_test_requests(split_log, small_catalog)[:200], *ODD_REQUESTS]

    columns = Context.from_batch(RequestBatch.of(requests), 6, small_catalog.n_tracks)

    objects = Context.from_requests(requests, 6, small_catalog.n_tracks)
    for field in Context.__dataclass_fields__:
        assert getattr(columns, field).dtype == getattr(objects, field).dtype
        assert np.array_equal(getattr(columns, field), getattr(objects, field)), field


@pytest.mark.parametrize("name", NAMES)
def test_columnar_answers_are_the_batch_answers(name: str, artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog) -> None:
    model = registry.make(name, small_catalog, {}, artifacts[name])
    requests = [*_test_requests(split_log, small_catalog)[:300], *ODD_REQUESTS]

    tracks, propensity = model.recommend_columns(RequestBatch.of(requests))

    assert model.columnar
    assert tracks.tolist() == [answer.track for answer in model.recommend_batch(requests)]
    assert propensity.tolist() == [1.0] * len(requests)


@pytest.mark.parametrize("name", NAMES)
def test_answers_follow_the_session(name: str, artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog) -> None:
    """One listener, 20 one-track sessions: the answers depend on the session.

    A model that served one precomputed list per listener would answer its top track, or the
    next one when the session just played the top track: at most 2 distinct answers. Distinct
    answers of correct models trained with seeds 0-19 on this fixture:
    bpr_knn 13, 9, 6, 11, 7, 6, 7, 9, 10, 9, 11, 9, 10, 10, 9, 11, 8, 11, 10, 8;
    dssm 19, 19, 16, 20, 18, 19, 17, 19, 17, 17, 18, 19, 18, 16, 20, 19, 18, 19, 18, 17.
    """
    model = registry.make(name, small_catalog, {}, artifacts[name])
    user = int(split_log[0].user[0])  # a listener the model was trained on
    sessions = [(int(track),) for track in range(0, small_catalog.n_tracks, 150)]
    answers = [model.recommend(Request(user=user, track=s[-1], time=1.0, history=s, times=(1.0,))).track for s in sessions]
    assert len(set(answers)) > 2


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("user", [0, 10**9], ids=["known", "cold"])
def test_a_long_session_never_repeats(name: str, user: int, artifacts: dict[str, Path], small_catalog: Catalog) -> None:
    model = registry.make(name, small_catalog, {}, artifacts[name])
    history, times = [7], [1.0]
    for step in range(60):
        answer = model.recommend(Request(user=user, track=history[-1], time=times[-1], history=tuple(history), times=tuple(times), seed=step))
        assert 0 <= answer.track < small_catalog.n_tracks and answer.track not in history
        history.append(answer.track)
        times.append(0.9 if step % 3 else 0.1)


@pytest.mark.parametrize("name", NAMES)
def test_cold_users_follow_the_session_artist(name: str, artifacts: dict[str, Path], small_catalog: Catalog) -> None:
    # A listener the model never saw, whose session so far is one fully heard track: the answer
    # should stay near it. Over many opening tracks, the same artist comes back far more often
    # than chance (1 in 200 artists; 10 or more of 100 by chance has probability below 1e-10).
    # The serving penalty on artists already played is off here: it pushes the other way.
    model = registry.make(name, small_catalog, {"artist_penalty": 0.0}, artifacts[name])
    opening = np.arange(0, small_catalog.n_tracks, 30)
    batch = [Request(user=10**9 + int(t), track=int(t), time=1.0, history=(int(t),), times=(1.0,)) for t in opening]
    answers = np.array([r.track for r in model.recommend_batch(batch)])
    same_artist = float(np.mean(small_catalog.artist[answers] == small_catalog.artist[opening]))
    assert same_artist >= 0.1


def test_the_service_starts_with_the_artifacts_and_answers(artifacts: dict[str, Path], small_world_dir: Path, tmp_path: Path) -> None:
    """A real `botify serve` on loopback with both models as treatments; sessions get distinct answers."""
    experiments = tmp_path / "experiments.yml"
    treatments = [{"recommender": "sticky_artist"}] + [{"recommender": name, "artifact": str(artifacts[name])} for name in NAMES]
    experiments.write_text(yaml.safe_dump({"experiments": [{"name": "learned", "serving": True, "treatments": treatments}]}))
    log = tmp_path / "events.duckdb"
    port = _free_port()
    command = [sys.executable, "-m", "botify", "serve", "--world", str(small_world_dir), "--experiments", str(experiments), "--log", str(log),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_alive(url, process)
        with requests.Session() as http:
            for user in range(30):
                track, played = (user * 37) % 3000, []
                for _ in range(6):
                    response = http.post(f"{url}/next/{user}", json={"track": track, "time": 0.8}, timeout=10)
                    assert response.status_code == 200, response.text
                    played.append(track)
                    track = response.json()["track"]
                    assert track not in played
                assert http.post(f"{url}/last/{user}", json={"track": track, "time": 0.5}, timeout=10).status_code == 200
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        process.stderr.close()
    with duckdb.connect(str(log), read_only=True) as connection:
        served = dict(connection.execute("SELECT recommender, count(*) FROM events WHERE message = 'next' GROUP BY 1").fetchall())
    assert set(served) == {"sticky_artist", *NAMES} and sum(served.values()) == 30 * 6


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_alive(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"botify serve exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")
        try:
            if requests.get(url + "/", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    pytest.fail(f"botify serve did not answer within {timeout} s")
