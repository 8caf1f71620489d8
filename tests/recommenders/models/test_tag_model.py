"""The tag model and the `tags` recommender: determinism, artifacts, and skill over the frequency baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score

from contracts.catalog import Catalog
from recommenders.base import Request
from recommenders.evaluation.content import frequency_baseline
from recommenders.models.artifacts import ArtifactError
from recommenders.models.content_config import EncoderConfig, TagModelConfig
from recommenders.models.tags import TagRecommender, merged_tags

QUICK = TagModelConfig(
    epochs=4,
    batch_size=128,
    lr=3e-3,
    encoder=EncoderConfig(d_model=32, heads=2, layers=1, feedforward=64, dropout=0.0),
    head_hidden=64,
    test_fraction=0.3,
    max_crop=8,
)


@pytest.fixture(scope="module")
def trained(small_catalog: Catalog) -> TagRecommender:
    return TagRecommender(small_catalog).fit(None, config=QUICK)


def _requests(catalog: Catalog, n: int = 40) -> list[Request]:
    rng = np.random.default_rng(5)
    tracks = rng.integers(0, catalog.n_tracks, (n, 3))
    return [Request(user=i, track=int(t[-1]), time=0.9, history=tuple(int(x) for x in t), times=(0.8, 0.2, 0.9), seed=i) for i, t in enumerate(tracks)]


def test_training_leaves_denormal_floats_alone_afterwards(trained: TagRecommender) -> None:
    """Training flushes denormals to zero for speed; code after it (statistics, serving) must see them again."""
    import torch

    tiny = np.float32(1e-39)  # below float32's smallest normal number
    assert float(torch.tensor([tiny]) * 1.0) != 0.0
    assert np.float32(tiny) * np.float32(1.0) != 0.0


@pytest.mark.slow
def test_same_seed_gives_the_same_weights(small_catalog: Catalog, trained: TagRecommender) -> None:
    config = QUICK.model_copy(update={"epochs": 1})
    first = TagRecommender(small_catalog).fit(None, config=config)
    second = TagRecommender(small_catalog).fit(None, config=config)
    assert first._weights.keys() == second._weights.keys()
    for name, value in first._weights.items():
        np.testing.assert_array_equal(value, second._weights[name], err_msg=name)
    other = TagRecommender(small_catalog).fit(None, config=config.model_copy(update={"seed": 1}))
    assert not np.array_equal(first._weights["head.3.weight"], other._weights["head.3.weight"])


@pytest.mark.slow
def test_trained_model_beats_the_frequency_baseline_on_held_out_tracks(small_catalog: Catalog, trained: TagRecommender) -> None:
    """Paired over tags: the mean per-tag AP gain is positive with a one-sided p < 0.001."""
    test, train = trained.split("test"), trained.split("train")
    truth = small_catalog.tag_matrix()[test].toarray() > 0
    train_truth = small_catalog.tag_matrix()[train].toarray() > 0
    scores = trained.tag_scores(test)
    baseline = frequency_baseline(train_truth, len(test))
    tags = np.flatnonzero(truth.any(axis=0))
    gain = np.array([average_precision_score(truth[:, j], scores[:, j]) - average_precision_score(truth[:, j], baseline[:, j]) for j in tags])
    assert len(tags) >= 30
    result = stats.ttest_1samp(gain, 0.0, alternative="greater")
    assert result.pvalue < 1e-3, f"mean AP gain {gain.mean():.4f} over {len(tags)} tags, p = {result.pvalue:.2g}"
    assert trained.metrics["test_macro_ap"] > trained.metrics["test_baseline_macro_ap"]


def test_every_unlabelled_track_gets_at_least_one_tag(small_catalog: Catalog, trained: TagRecommender) -> None:
    observed = np.diff(small_catalog.tag_matrix().indptr)
    assert (observed == 0).sum() > 0
    merged = trained.tags
    assert merged is not None and (np.diff(merged.indptr) > 0).all()
    np.testing.assert_array_equal(merged[observed > 0].toarray(), small_catalog.tag_matrix()[observed > 0].toarray())


def test_artifact_round_trip_serves_the_same_tracks(small_catalog: Catalog, trained: TagRecommender, tmp_path: Path) -> None:
    trained.save(tmp_path / "tags")
    assert {p.name for p in (tmp_path / "tags").iterdir()} == {"model.json", "weights.npz"}
    loaded = TagRecommender(small_catalog).load(tmp_path / "tags")
    requests = _requests(small_catalog)
    assert loaded.recommend_batch(requests) == trained.recommend_batch(requests)
    assert loaded.metrics == pytest.approx(trained.metrics)
    np.testing.assert_allclose(loaded.tag_scores(trained.split("test")[:5]), trained.tag_scores(trained.split("test")[:5]), rtol=1e-6)


def test_loading_another_models_artifact_is_refused(small_catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text('{"model": "dssm", "format_version": 1, "config": {}, "data": {}}')
    with pytest.raises(ArtifactError, match="'dssm' model, not 'tags'"):
        TagRecommender(small_catalog).load(tmp_path)


def test_recommendations_follow_the_liked_tags(small_catalog: Catalog, trained: TagRecommender) -> None:
    requests = _requests(small_catalog)
    answers = trained.recommend_batch(requests)
    assert answers == [trained.recommend(r) for r in requests]
    profile = trained.tags.toarray()
    for request, answer in zip(requests, answers, strict=True):
        assert answer.track not in request.history
        liked = [t for t, f in zip(request.history, request.times, strict=True) if f >= 0.5]
        assert profile[answer.track] @ profile[liked].sum(axis=0) > 0  # shares a tag with a liked track


def test_new_only_serves_released_new_tracks(release_catalog: Catalog) -> None:
    recommender = TagRecommender(release_catalog, new_only=True)
    recommender._arrays = {"predicted_tracks": np.zeros(0, np.int64), "predicted_indptr": np.zeros(1, np.int64), "predicted_indices": np.zeros(0, np.int16)}
    recommender._build()
    recommender.fitted = True
    answers = recommender.recommend_batch([Request(user=u, track=u, time=1.0, day=1) for u in range(30)])
    days = release_catalog.release_day[[a.track for a in answers]]
    assert (days == 1).all()  # released on day 1, not day 0 and not the unreleased day 2


def test_merged_tags_fill_only_unlabelled_tracks(tiny_catalog: Catalog) -> None:
    observed = np.diff(tiny_catalog.tag_matrix().indptr)
    tracks = np.arange(tiny_catalog.n_tracks)
    indptr = np.arange(tiny_catalog.n_tracks + 1)
    merged = merged_tags(tiny_catalog, (tracks, indptr, np.full(tiny_catalog.n_tracks, 3, np.int16)))
    for track in tracks:
        expected = tiny_catalog.tags(track) if observed[track] else [3]
        assert sorted(merged[track].indices.tolist()) == sorted(np.asarray(expected).tolist())


@pytest.mark.parametrize(("params", "message"), [({"like_threshold": 2.0}, "like_threshold"), ({"colour": 1}, "colour")])
def test_bad_serving_parameters_are_named(small_catalog: Catalog, params: dict[str, object], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        TagRecommender(small_catalog, **params)
