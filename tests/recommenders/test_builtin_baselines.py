"""random, sticky_artist and top_pop: answers written out on a ten-track catalog, plus statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from contracts.catalog import Catalog
from contracts.columns import Columns
from recommenders import registry
from recommenders.base import Recommendation, Request
from recommenders.builtin._artifacts import ArtifactError
from recommenders.builtin._pools import Pool, ReleasedPools
from recommenders.builtin.random import RandomRecommender
from recommenders.builtin.sticky_artist import StickyArtistRecommender
from recommenders.builtin.top_pop import TopPopRecommender


def _request(history: tuple[int, ...], seed: int = 0, user: int = 1, day: int | None = None) -> Request:
    return Request(user=user, track=history[-1], time=0.9, history=history, times=(0.9,) * len(history), seed=seed, day=day)


# -- random --------------------------------------------------------------------------------------


def test_random_is_uniform_over_unplayed_tracks(tiny_catalog: Catalog) -> None:
    recommender = RandomRecommender(tiny_catalog)
    answers = recommender.recommend_batch([_request((3, 5), seed=s) for s in range(8000)])
    counts = np.bincount([a.track for a in answers], minlength=10)
    assert counts[3] == counts[5] == 0
    assert {a.propensity for a in answers} == {1 / 8}
    # Fixed seeds, so deterministic; a uniform draw passes at this level 999 times in 1000.
    assert stats.chisquare(np.delete(counts, [3, 5])).pvalue > 1e-3


def test_random_same_seed_same_answer_other_seed_other_answers(small_catalog: Catalog) -> None:
    requests = [_request((10, 20), seed=s) for s in range(50)]
    first = RandomRecommender(small_catalog, seed=1).recommend_batch(requests)
    assert RandomRecommender(small_catalog, seed=1).recommend_batch(requests) == first
    assert len({a.track for a in first}) > 40  # the request seed changes the draw
    other = RandomRecommender(small_catalog, seed=2).recommend_batch(requests)
    assert sum(a.track == b.track for a, b in zip(first, other, strict=True)) < 5


def test_random_differs_between_users_under_one_seed(small_catalog: Catalog) -> None:
    answers = RandomRecommender(small_catalog).recommend_batch([_request((10,), seed=0, user=u) for u in range(50)])
    assert len({a.track for a in answers}) > 40


def test_random_repeats_only_when_everything_was_played(tiny_catalog: Catalog) -> None:
    everything = tuple(range(10))
    answer = RandomRecommender(tiny_catalog).recommend(_request(everything))
    assert 0 <= answer.track < 10 and answer.propensity == pytest.approx(1 / 10)


def test_random_skips_unreleased_tracks(release_catalog: Catalog) -> None:
    recommender = RandomRecommender(release_catalog)
    day = release_catalog.release_day

    def released_days(request_day: int | None) -> set[int]:
        answers = recommender.recommend_batch([_request((1,), seed=s, day=request_day) for s in range(3000)])
        return {int(day[a.track]) for a in answers}

    assert released_days(0) == {0}
    assert released_days(1) == {0, 1}
    assert released_days(None) == {0, 1, 2} == released_days(7)
    assert released_days(-3) == {0}  # before the first release: the initial catalog
    answer = recommender.recommend(_request((1,), day=1))
    assert answer.propensity == pytest.approx(1 / (1550 - 1))


def test_batch_with_mixed_days_matches_single(release_catalog: Catalog) -> None:
    recommender = RandomRecommender(release_catalog)
    requests = [_request((1, 2), seed=s, day=[None, 0, 1, 2][s % 4]) for s in range(400)]
    assert recommender.recommend_batch(requests) == [recommender.recommend(r) for r in requests]


# -- sticky_artist -------------------------------------------------------------------------------


def test_sticky_artist_stays_with_the_artist(tiny_catalog: Catalog) -> None:
    recommender = StickyArtistRecommender(tiny_catalog)
    answers = recommender.recommend_batch([_request((0, 6, 7), seed=s) for s in range(200)])
    assert {a.track for a in answers} == {8, 9}  # artist 3 has tracks 6..9
    assert {a.propensity for a in answers} == {0.5}


def test_sticky_artist_falls_back_to_random_when_the_artist_is_exhausted(tiny_catalog: Catalog) -> None:
    recommender = StickyArtistRecommender(tiny_catalog)
    history = (6, 7, 8, 9)
    answers = recommender.recommend_batch([_request(history, seed=s) for s in range(300)])
    assert {a.track for a in answers} == set(range(6))
    assert {a.propensity for a in answers} == {1 / 6}
    assert answers[:20] == [recommender.recommend(_request(history, seed=s)) for s in range(20)]


def test_sticky_artist_falls_back_to_top_pop(tiny_catalog: Catalog) -> None:
    recommender = StickyArtistRecommender(tiny_catalog, fallback="top_pop")
    assert recommender.recommend(_request((0, 5))) == Recommendation(1, 1.0)  # artist 2 has only track 5


def test_sticky_artist_on_a_real_world_follows_artists(small_catalog: Catalog) -> None:
    recommender = StickyArtistRecommender(small_catalog)
    requests = [_request((t,), seed=t) for t in range(0, 3000, 7)]
    answers = recommender.recommend_batch(requests)
    same = [small_catalog.artist[a.track] == small_catalog.artist[r.track] for a, r in zip(answers, requests, strict=True)]
    single_track_artists = sum(len(small_catalog.tracks_of_artist(small_catalog.artist[r.track])) == 1 for r in requests)
    assert sum(same) == len(requests) - single_track_artists


# -- top_pop -------------------------------------------------------------------------------------


def test_top_pop_follows_the_prior_skipping_the_session(tiny_catalog: Catalog) -> None:
    recommender = TopPopRecommender(tiny_catalog)
    assert recommender.recommend(_request((0, 2))) == Recommendation(1, 1.0)
    assert recommender.recommend(_request((4,))) == Recommendation(0, 1.0)


def _log(plays: list[tuple[int, float]]) -> pd.DataFrame:
    return pd.DataFrame({Columns.USER: 1, Columns.TRACK: [t for t, _ in plays], Columns.TIME: [x for _, x in plays]})


TINY_LOG = [(5, 0.9), (5, 0.9), (7, 1.0), (3, 0.5), (3, 0.5), (9, 0.1)]
# Scores: 5 -> 1.8, 3 -> 1.0, 7 -> 1.0 (tie: 3 has the higher prior), 9 -> 0.1, the rest 0 (by prior).
TINY_RANKING = [5, 3, 7, 9, 0, 1, 2, 4, 6, 8]


def test_top_pop_fitted_ranks_by_listened_time(tiny_catalog: Catalog) -> None:
    recommender = TopPopRecommender(tiny_catalog).fit(_log(TINY_LOG))
    assert recommender.ranking().tolist() == TINY_RANKING
    history: tuple[int, ...] = (6,)
    sequence = []
    for _ in range(9):
        track = recommender.recommend(_request(history)).track
        sequence.append(track)
        history = (*history, track)
    assert sequence == [t for t in TINY_RANKING if t != 6]
    assert recommender.recommend(_request(history)).track == 5  # all played: the best again


def test_top_pop_k_draws_among_the_best_unplayed(tiny_catalog: Catalog) -> None:
    recommender = TopPopRecommender(tiny_catalog, k=3).fit(_log(TINY_LOG))
    answers = recommender.recommend_batch([_request((5,), seed=s) for s in range(300)])
    assert {a.track for a in answers} == {3, 7, 9}
    assert {a.propensity for a in answers} == {1 / 3}


def test_top_pop_save_load_round_trip(tiny_catalog: Catalog, tmp_path: Path) -> None:
    TopPopRecommender(tiny_catalog).fit(_log(TINY_LOG)).save(tmp_path / "art")
    loaded = registry.make("top_pop", tiny_catalog, artifact=tmp_path / "art")
    assert isinstance(loaded, TopPopRecommender) and loaded.ranking().tolist() == TINY_RANKING


def test_top_pop_refuses_a_foreign_artifact(tiny_catalog: Catalog, tmp_path: Path) -> None:
    pd.DataFrame({"track": [3, 12], "score": [1.0, 2.0]}).to_parquet(tmp_path / "top_pop.parquet")
    (tmp_path / "manifest.json").write_text('{"recommender": "top_pop", "format": 1}')
    with pytest.raises(ArtifactError, match=r"track ids must lie in 0\.\.9"):
        TopPopRecommender(tiny_catalog).load(tmp_path)
    (tmp_path / "manifest.json").write_text('{"recommender": "i2i", "format": 1}')
    with pytest.raises(ArtifactError, match="belongs to recommender 'i2i'"):
        TopPopRecommender(tiny_catalog).load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TopPopRecommender(tiny_catalog).load(tmp_path / "missing")


# -- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("random", {"sed": 1}, "sed"),
        ("random", {"seed": "one"}, "seed == 'one', must be an integer"),
        ("sticky_artist", {"fallback": "tags"}, "fallback == 'tags', must be one of 'random', 'top_pop'"),
        ("top_pop", {"k": 0}, "k == 0, must be >= 1"),
        ("top_pop", {"k": True}, "k == True, must be an integer"),
    ],
)
def test_bad_parameters_are_named(tiny_catalog: Catalog, name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(registry.RegistryError, match=message):
        registry.make(name, tiny_catalog, params)


def test_unknown_parameter_is_a_type_error(tiny_catalog: Catalog) -> None:
    with pytest.raises(TypeError, match="colour"):
        RandomRecommender(tiny_catalog, colour="blue")  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [RandomRecommender, StickyArtistRecommender, TopPopRecommender])
def test_get_params_rebuilds_the_same_recommender(small_catalog: Catalog, cls: type) -> None:
    original = cls(small_catalog, seed=5)
    rebuilt = cls(small_catalog, **original.get_params())
    requests = [_request((t, t + 1), seed=t) for t in range(0, 2000, 97)]
    assert rebuilt.recommend_batch(requests) == original.recommend_batch(requests)


def test_pools_per_day_stay_bounded() -> None:
    built: list[int] = []

    def build(released: np.ndarray) -> Pool:
        built.append(int(released.sum()))
        order = np.flatnonzero(released)
        return Pool(order, np.array([0, len(order)]), len(released))

    pools = ReleasedPools(np.repeat(np.arange(10), 3), build)  # three tracks released per day
    for day in [0, 1, 2, 3, 4, 5, 5, 0]:
        pools.for_day(day)
    assert built == [3, 6, 9, 12, 15, 18, 3]  # day 5 came from the cache; day 0 was dropped and rebuilt
    assert pools.for_day(None).order.tolist() == list(range(30))
