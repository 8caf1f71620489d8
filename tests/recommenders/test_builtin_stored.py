"""indexed and i2i: stored lists, anchors, fallbacks, fitting from a hand-written log, artifacts."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from contracts.catalog import Catalog
from contracts.columns import Columns
from recommenders import registry
from recommenders.base import NotFittedError, Recommendation, Request
from recommenders.builtin._artifacts import ArtifactError
from recommenders.builtin.i2i import I2IRecommender
from recommenders.builtin.indexed import IndexedRecommender
from recommenders.testing import write_catalog


def _request(history: tuple[int, ...], times: tuple[float, ...] | None = None, user: int = 1, day: int | None = None) -> Request:
    times = times if times is not None else (0.9,) * len(history)
    return Request(user=user, track=history[-1], time=times[-1], history=history, times=times, day=day)


# Liked plays per session: S1 {0, 1}, S2 {0, 1, 2}, S3 {1, 2}, S4 {3}; skips (time < 0.5) of 5 and 9.
SESSIONS = [
    (0, 1, [(0, 0.9), (1, 0.8), (5, 0.2)]),
    (1, 2, [(0, 1.0), (1, 0.7), (2, 0.6), (9, 0.1)]),
    (2, 3, [(1, 0.5), (2, 0.9)]),
    (3, 4, [(3, 1.0), (5, 0.3)]),
]
# Cosine by sessions: sim(0,1) = 2/sqrt(2*3), sim(0,2) = 1/sqrt(2*2), sim(1,2) = 2/sqrt(3*2).
SIM_01 = SIM_12 = 2 / math.sqrt(6)
SIM_02 = 0.5


@pytest.fixture
def tiny_log() -> pd.DataFrame:
    rows = [
        {
            Columns.TS: pd.Timestamp("2024-01-01") + pd.Timedelta(minutes=i),
            Columns.USER: user,
            Columns.SESSION: session,
            Columns.TRACK: track,
            Columns.TIME: time,
        }
        for i, (user, session, plays) in enumerate(SESSIONS)
        for track, time in plays
    ]
    return pd.DataFrame(rows)


# -- i2i -----------------------------------------------------------------------------------------


def test_i2i_fit_ranks_neighbours_by_cosine(tiny_catalog: Catalog, tiny_log: pd.DataFrame) -> None:
    recommender = I2IRecommender(tiny_catalog).fit(tiny_log)
    assert recommender.lists.get(0).tolist() == [1, 2]
    assert recommender.lists.get(1).tolist() == [0, 2]  # a tie: the lower id first
    assert recommender.lists.get(2).tolist() == [1, 0]
    assert recommender.lists.get(3).tolist() == [] and recommender.lists.get(5).tolist() == []
    frame = recommender.lists.to_frame("anchor")
    assert frame.loc[frame["anchor"] == 0, "score"].tolist() == pytest.approx([SIM_01, SIM_02])


def test_i2i_anchors_on_the_last_liked_track_not_the_last_played(tiny_catalog: Catalog) -> None:
    recommender = I2IRecommender.from_lists(tiny_catalog, {0: [4, 6], 7: [8]})
    assert recommender.anchor_tracks(_request((0, 7), times=(1.0, 0.1))) == [0]
    assert recommender.recommend(_request((0, 7), times=(1.0, 0.1))) == Recommendation(4, 1.0)
    assert recommender.recommend(_request((0, 7), times=(1.0, 0.9))) == Recommendation(8, 1.0)
    # The newest anchor's list is exhausted: the next anchor answers.
    assert recommender.recommend(_request((0, 7, 8), times=(1.0, 0.9, 0.2))) == Recommendation(4, 1.0)
    assert recommender.recommend(_request((0, 4, 7, 8), times=(1.0, 0.6, 0.9, 0.2))) == Recommendation(6, 1.0)


def test_i2i_falls_back_when_nothing_was_liked(tiny_catalog: Catalog) -> None:
    recommender = I2IRecommender.from_lists(tiny_catalog, {0: [4]}, fallback="top_pop")
    assert recommender.recommend(_request((0, 2), times=(0.3, 0.1))) == Recommendation(1, 1.0)  # top prior unplayed
    random_fallback = I2IRecommender.from_lists(tiny_catalog, {0: [4]})
    answer = random_fallback.recommend(_request((0, 2), times=(0.3, 0.1)))
    assert answer.track not in (0, 2) and answer.propensity == pytest.approx(1 / 8)


def test_i2i_without_times_uses_the_request_time(tiny_catalog: Catalog) -> None:
    recommender = I2IRecommender.from_lists(tiny_catalog, {2: [3], 0: [4]})
    bare = Request(user=1, track=2, time=0.8, history=(0, 2))
    assert recommender.recommend(bare) == Recommendation(3, 1.0)
    first = Request(user=1, track=0, time=1.0)  # no history at all: the track itself
    assert recommender.recommend(first) == Recommendation(4, 1.0)


# -- indexed -------------------------------------------------------------------------------------


def test_indexed_serves_the_user_list_then_falls_back(tiny_catalog: Catalog) -> None:
    recommender = IndexedRecommender.from_lists(tiny_catalog, {1: [4, 2, 7]})
    assert recommender.recommend(_request((4,))) == Recommendation(2, 1.0)
    assert recommender.recommend(_request((4, 2))) == Recommendation(7, 1.0)
    assert recommender.recommend(_request((4, 2, 7))) == Recommendation(0, 1.0)  # top_pop by prior
    assert recommender.recommend(_request((0, 4), user=99)) == Recommendation(1, 1.0)  # cold user


def test_indexed_fit_scores_by_liked_tracks_and_their_neighbours(tiny_catalog: Catalog, tiny_log: pd.DataFrame) -> None:
    recommender = IndexedRecommender(tiny_catalog).fit(tiny_log)
    # User 0 liked {0, 1}: track 0 scores 1 + sim(1,0), track 1 scores sim(0,1) + 1, track 2 sim(0,2) + sim(1,2).
    frame = recommender.lists.to_frame("user")
    user0 = frame[frame["user"] == 0]
    assert user0["track"].tolist() == [0, 1, 2]
    assert user0["score"].tolist() == pytest.approx([1 + SIM_01, 1 + SIM_01, SIM_02 + SIM_12])
    assert recommender.recommend(_request((0,), user=0)) == Recommendation(1, 1.0)
    assert recommender.lists.get(3).tolist() == [3]  # user 3 liked only track 3, which has no neighbours


def test_fallback_top_pop_is_fitted_and_saved_with_the_lists(tiny_catalog: Catalog, tiny_log: pd.DataFrame, tmp_path: Path) -> None:
    IndexedRecommender(tiny_catalog).fit(tiny_log).save(tmp_path / "indexed")
    assert (tmp_path / "indexed" / "fallback" / "manifest.json").is_file()
    loaded = registry.make("indexed", tiny_catalog, artifact=tmp_path / "indexed")
    # A cold user gets the log's most listened track (1: 0.8 + 0.7 + 0.5), not the prior's (0).
    assert loaded.recommend(_request((5,), user=42)) == Recommendation(1, 1.0)


@pytest.mark.parametrize("cls", [IndexedRecommender, I2IRecommender])
def test_save_load_round_trip_and_registry(cls: type, small_catalog: Catalog, small_events: pd.DataFrame, tmp_path: Path) -> None:
    fitted = cls(small_catalog).fit(small_events)
    fitted.save(tmp_path / "art")
    loaded = registry.make(cls.name, small_catalog, artifact=tmp_path / "art")
    requests = [_request((t, t + 3), user=u) for u, t in zip(range(80), range(0, 2400, 30), strict=True)]
    assert loaded.recommend_batch(requests) == fitted.recommend_batch(requests) == [fitted.recommend(r) for r in requests]
    assert len(fitted.lists) > 0


@pytest.mark.parametrize("cls", [IndexedRecommender, I2IRecommender])
def test_unfitted_refuses_and_registry_needs_an_artifact(cls: type, tiny_catalog: Catalog) -> None:
    with pytest.raises(NotFittedError, match=f"'{cls.name}' is not fitted"):
        cls(tiny_catalog).recommend(_request((1,)))
    with pytest.raises(registry.RegistryError, match="needs an artifact directory"):
        registry.make(cls.name, tiny_catalog)


def test_stored_lists_skip_unreleased_tracks(tmp_path: Path) -> None:
    catalog = Catalog(write_catalog(tmp_path / "w", artist=[0, 0, 1, 1, 2], release_day=[0, 0, 0, 1, 2]))
    recommender = IndexedRecommender.from_lists(catalog, {1: [4, 3, 2]})
    assert recommender.recommend(_request((0,), day=0)).track == 2
    assert recommender.recommend(_request((0,), day=1)).track == 3
    assert recommender.recommend(_request((0,), day=2)).track == 4
    assert recommender.recommend(_request((0,))).track == 4


def test_lists_of_another_world_are_refused(tiny_catalog: Catalog, tmp_path: Path) -> None:
    pd.DataFrame({"user": [1, 1], "rank": [0, 1], "track": [3, 40]}).to_parquet(tmp_path / "lists.parquet")
    (tmp_path / "manifest.json").write_text('{"recommender": "indexed", "format": 1}')
    with pytest.raises(ArtifactError, match=r"track ids must lie in 0\.\.9"):
        IndexedRecommender(tiny_catalog).load(tmp_path)
    pd.DataFrame({"user": [1, 1], "rank": [0, 0], "track": [3, 4]}).to_parquet(tmp_path / "lists.parquet")
    with pytest.raises(ArtifactError, match=r"\(user, rank\) pairs must be unique"):
        IndexedRecommender(tiny_catalog).load(tmp_path)


def test_lists_written_by_another_tool_load(tiny_catalog: Catalog, tmp_path: Path) -> None:
    # Any engine can write the documented table; rows need not be sorted and score is optional.
    pd.DataFrame({"anchor": [2, 2, 0], "rank": [1, 0, 0], "track": [7, 8, 3]}).to_parquet(tmp_path / "neighbours.parquet")
    (tmp_path / "manifest.json").write_text('{"recommender": "i2i", "format": 1}')
    recommender = I2IRecommender(tiny_catalog).load(tmp_path)
    assert recommender.lists.get(2).tolist() == [8, 7]
    assert recommender.recommend(_request((0, 2))) == Recommendation(8, 1.0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"anchors": 0}, "anchors == 0, must be >= 1"),
        ({"like_threshold": 1.5}, r"like_threshold == 1\.5, must be <= 1\.0"),
        ({"fallback": "dssm"}, "fallback == 'dssm'"),
    ],
)
def test_i2i_bad_parameters(tiny_catalog: Catalog, params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        I2IRecommender(tiny_catalog, **params)  # type: ignore[arg-type]
