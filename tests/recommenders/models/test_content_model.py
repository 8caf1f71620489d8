"""The content model and the `content` / `cold_mix` recommenders: co-listening by hand, the
two towers, deterministic training, retrieval metrics by hand, artifacts, zero-play tracks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from contracts.catalog import Catalog
from recommenders import registry
from recommenders.base import Request
from recommenders.cli import main
from recommenders.models.artifacts import ArtifactError
from recommenders.models.colisten import co_listened_neighbours, co_listening, liked_matrix, ppmi
from recommenders.models.content import ContentRecommender
from recommenders.models.content_config import ContentModelConfig, EncoderConfig
from recommenders.models.mix import ColdMixRecommender, cold_mask
from recommenders.models.nn import TrainingError
from recommenders.models.nn.content import retrieval_metrics
from recommenders.models.nn.encoders import TwoTower, info_nce
from recommenders.models.sessions import SessionLog

QUICK = ContentModelConfig(
    epochs=10,
    batch_size=128,
    lr=5e-3,
    encoder=EncoderConfig(d_model=16, heads=2, layers=1, feedforward=32, dropout=0.0),
    max_crop=8,
    embedding=16,
    hidden=32,
    behaviour_dim=16,
    min_likes=1,
    test_fraction=0.2,
)
QUICK_YAML = QUICK.model_dump(mode="json", exclude_defaults=True)


def _log(rows: list[tuple[int, int, float]]) -> SessionLog:
    """One session per listener from (user, track, time) rows, in order."""
    user = np.array([r[0] for r in rows], dtype=np.int64)
    change = np.flatnonzero(np.diff(user)) + 1
    offsets = np.concatenate([[0], change, [len(rows)]]).astype(np.int64)
    return SessionLog(user, np.array([r[1] for r in rows], dtype=np.int64), np.array([r[2] for r in rows], dtype=np.float32),
                      np.arange(len(rows), dtype=np.int64), offsets)


# Listener 0 likes 0, 1, 2; listener 1 likes 0, 1 (and skips 3); listener 2 likes 1, 2, 4 (4 twice).
HAND = _log([(0, 0, 0.9), (0, 1, 0.6), (0, 2, 1.0), (1, 0, 0.5), (1, 1, 0.8), (1, 3, 0.1), (2, 1, 0.7), (2, 2, 0.9), (2, 4, 0.6), (2, 4, 0.9)])


@pytest.fixture(scope="module")
def both_days(two_day_events: pd.DataFrame) -> SessionLog:
    return SessionLog.from_events(two_day_events)


@pytest.fixture(scope="module")
def trained(both_days: SessionLog, small_catalog: Catalog) -> ContentRecommender:
    return ContentRecommender(small_catalog).fit(both_days, config=QUICK)


def _requests(catalog: Catalog, n: int = 40, seed: int = 5) -> list[Request]:
    rng = np.random.default_rng(seed)
    tracks = rng.integers(0, catalog.n_tracks, (n, 3))
    return [Request(user=i, track=int(t[-1]), time=0.9, history=tuple(int(x) for x in t), times=(0.8, 0.2, 0.9), seed=i) for i, t in enumerate(tracks)]


def test_liked_matrix_counts_a_listener_once_and_ignores_skips() -> None:
    liked = liked_matrix(HAND, 6, like_threshold=0.5).toarray()
    np.testing.assert_array_equal(liked, [[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 1, 0]])


def test_co_listening_counts_by_hand() -> None:
    colisten = co_listening(HAND, 6, like_threshold=0.5, min_likes=2)
    np.testing.assert_array_equal(colisten.tracks, [0, 1, 2])  # 3 is skipped, 4 has one liker
    np.testing.assert_array_equal(colisten.likes, [2, 3, 2])
    np.testing.assert_array_equal(colisten.counts.toarray(), [[0, 2, 1], [2, 0, 2], [1, 2, 0]])
    np.testing.assert_array_equal(colisten.plays, [2, 3, 2, 1, 2, 0])
    with pytest.raises(ValueError, match="min_likes"):
        co_listening(HAND, 6, min_likes=0)


def test_ppmi_by_hand() -> None:
    counts = np.array([[0, 2, 1], [2, 0, 2], [1, 2, 0]], dtype=np.float64)
    total, row = counts.sum(), counts.sum(axis=1)
    context = counts.sum(axis=0) ** 0.75
    context /= context.sum()
    expected = np.maximum(np.log(counts * total / (row[:, None] * context[None, :] * total), where=counts > 0, out=np.full_like(counts, -1.0)), 0)
    np.testing.assert_allclose(ppmi(counts).toarray(), expected, rtol=1e-5)
    assert ppmi(np.zeros((2, 2))).nnz == 0


def test_neighbours_are_the_co_liked_candidates_best_first() -> None:
    colisten = co_listening(HAND, 6, min_likes=2)
    neighbours = co_listened_neighbours(colisten, np.array([0, 1]), np.array([0, 1, 2]), top=5, min_count=2)
    np.testing.assert_array_equal(neighbours[0], [1])  # 0 shares one liker with 2: below min_count
    assert sorted(neighbours[1]) == [0, 2]


def test_content_tower_ignores_padding_and_ends_on_the_unit_sphere() -> None:
    torch.manual_seed(0)
    net = TwoTower(4, 6, EncoderConfig(d_model=8, heads=2, layers=1, feedforward=16, dropout=0.0), embedding=5, hidden=7, temperature=0.1).eval()
    frames = torch.randn(3, 6, 4)
    lengths = torch.tensor([6, 3, 1])
    frames[1, 3:] = 0
    frames[2, 1:] = 0
    with torch.no_grad():
        together = net.content(frames, lengths)
        alone = net.content(frames[1:2, :3], lengths[1:2])
        garbage = frames.clone()
        garbage[2, 1:] = 99.0  # padding content must not matter
        assert torch.allclose(net.content(garbage, lengths)[2], together[2], atol=1e-5)
        behaviour = net.behaviour(torch.randn(3, 6))
    assert together.shape == (3, 5) and behaviour.shape == (3, 5)
    torch.testing.assert_close(together[1], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(together.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(behaviour.norm(dim=1), torch.ones(3))


def test_info_nce_by_hand() -> None:
    content = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=1)
    behaviour = torch.nn.functional.normalize(torch.tensor([[0.8, 0.6], [0.0, 1.0]]), dim=1)
    scale = torch.tensor(np.log(10.0), dtype=torch.float32)
    logits = 10.0 * (content @ behaviour.T).numpy()

    def cross_entropy(matrix: np.ndarray) -> float:
        return float(np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(matrix)]))

    expected = 0.5 * (cross_entropy(logits) + cross_entropy(logits.T))
    assert float(info_nce(content, behaviour, scale)) == pytest.approx(expected, rel=1e-5)
    # Perfectly aligned pairs with a large scale: the loss tends to zero.
    eye = torch.eye(3)
    assert float(info_nce(eye, eye, torch.tensor(4.6))) < 1e-3


def test_retrieval_metrics_by_hand() -> None:
    # Two queries (ids 10, 11) against candidates 10..13; a query never retrieves itself.
    candidates = np.eye(4, dtype=np.float32)
    candidate_ids = np.array([10, 11, 12, 13])
    queries = np.array([[0.9, 0.0, 0.8, 0.1], [0.0, 0.9, 0.0, 0.0]], dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    relevant = [np.array([12, 13]), np.array([13])]
    config = ContentModelConfig(margin=0.5, cap=3)
    result = retrieval_metrics(queries, candidates, candidate_ids, np.array([10, 11]), relevant, config)
    # Query 10 ranks 12 (0.8), 13 (0.1), 11 (0): recall@10 = 1. Query 11 ranks 10, 12, 13 all at 0,
    # stable order -> 13 is third, within 10: recall 1. Mean 1.
    assert result["recall@10"] == pytest.approx(1.0)
    # Margin selection, query 10: keep >= 0.8 * 0.5 -> {12}: precision 1, recall 1/2, F2 = 5*0.5/(4+0.5) = 5/9.
    # Query 11: best similarity 0 -> keeps the ties at 0 (10, 12, 13), capped at 3: precision 1/3, recall 1,
    # F2 = 5*(1/3)/(4/3+1) = 5/7.
    f2_10, f2_11 = 5 / 9, 5 / 7
    assert result["f2"] == pytest.approx((f2_10 + f2_11) / 2, rel=1e-6)
    assert result["selected"] == pytest.approx((1 + 3) / 2)


def test_training_is_deterministic_for_a_seed(split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog, trained: ContentRecommender) -> None:
    config = QUICK.model_copy(update={"epochs": 1})
    first = ContentRecommender(small_catalog).fit(split_log[0], config=config)
    second = ContentRecommender(small_catalog).fit(split_log[0], config=config)
    assert first._weights.keys() == second._weights.keys()
    for name, value in first._weights.items():
        np.testing.assert_array_equal(value, second._weights[name], err_msg=name)
    np.testing.assert_array_equal(first._arrays["items"], second._arrays["items"])
    other = ContentRecommender(small_catalog).fit(split_log[0], config=config.model_copy(update={"seed": 1}))
    assert any(not np.array_equal(value, other._weights[name]) for name, value in first._weights.items())


def test_training_lowers_the_loss_and_beats_chance_on_held_out_tracks(trained: ContentRecommender) -> None:
    history, metrics = trained.history, trained.metrics
    assert len(history) == QUICK.epochs and history[-1]["train_loss"] < history[0]["train_loss"]
    # Recall@10 per held-out track is a mean over its neighbours: under chance each hit has
    # probability chance_recall@10, so the mean has standard error at most sqrt(c (1 - c) / n).
    # Ask for chance plus three of those (one-sided p < 0.0015).
    n, chance = metrics["test_tracks_with_truth"], metrics["chance_recall@10"]
    assert n >= 50
    assert metrics["test_recall@10"] > chance + 3 * np.sqrt(chance * (1 - chance) / n)
    assert metrics["warm_tracks"] == len(trained._arrays["warm"]) and metrics["test_tracks"] == len(trained._arrays["test"])
    assert 0 <= metrics["test_f2"] <= 1 and metrics["test_selected"] >= 1


def test_items_are_unit_rows_for_every_track_played_or_not(trained: ContentRecommender, small_catalog: Catalog) -> None:
    items = trained._arrays["items"]
    assert items.shape == (small_catalog.n_tracks, QUICK.embedding)
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)
    warm = trained._arrays["warm"]
    cold = np.setdiff1d(np.arange(small_catalog.n_tracks), warm)
    np.testing.assert_array_equal(trained._arrays["queries"][cold], items[cold])  # cold tracks query with their content


def test_recommends_tracks_nobody_played(trained: ContentRecommender, both_days: SessionLog, small_catalog: Catalog) -> None:
    played = np.zeros(small_catalog.n_tracks, dtype=bool)
    played[both_days.track] = True
    answers = [r.track for r in trained.recommend_batch(_requests(small_catalog, 200))]
    # A model that could not place unplayed tracks would give 0 here.
    assert np.mean(~played[answers]) > 0.1
    # A session whose only track was never played still gets an answer near it in content.
    zero = int(np.flatnonzero(~played)[0])
    answer = trained.recommend(Request(user=1, track=zero, time=1.0, history=(zero,), times=(1.0,), seed=0))
    assert answer.track != zero


def test_artifact_round_trip(trained: ContentRecommender, small_catalog: Catalog, tmp_path: Path) -> None:
    trained.save(tmp_path / "content")
    loaded = ContentRecommender(small_catalog).load(tmp_path / "content")
    for name, value in trained._arrays.items():
        np.testing.assert_array_equal(loaded._arrays[name], value, err_msg=name)
    assert loaded.config == trained.config and loaded.metrics == pytest.approx(trained.metrics)
    requests = _requests(small_catalog)
    assert [r.track for r in loaded.recommend_batch(requests)] == [r.track for r in trained.recommend_batch(requests)]


def test_artifact_of_another_world_is_refused(trained: ContentRecommender, release_catalog: Catalog, tmp_path: Path) -> None:
    trained.save(tmp_path / "content")
    with pytest.raises(ArtifactError, match="retrain"):
        ContentRecommender(release_catalog).load(tmp_path / "content")


def test_too_small_a_log_is_a_training_error(small_catalog: Catalog) -> None:
    with pytest.raises(TrainingError, match="too small|liked by at least"):
        ContentRecommender(small_catalog).fit(HAND, config=QUICK.model_copy(update={"min_likes": 2}))


def test_behaviour_from_a_trained_dssm(split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog, artifacts: dict[str, Path]) -> None:
    config = QUICK.model_copy(update={"epochs": 1, "behaviour": "dssm", "behaviour_artifact": str(artifacts["dssm"])})
    model = ContentRecommender(small_catalog).fit(split_log[0], config=config)
    assert model.metrics["warm_tracks"] >= 50 and model._arrays["items"].shape == (small_catalog.n_tracks, QUICK.embedding)
    with pytest.raises(ValueError, match="behaviour_artifact"):
        ContentModelConfig(behaviour="bpr_knn")


def test_new_only_recommends_released_new_tracks(release_catalog: Catalog) -> None:
    """On a world with daily releases, `new_only` serves tracks released after day 0 only."""
    model = ContentRecommender(release_catalog, new_only=True)
    rng = np.random.default_rng(0)
    items = rng.normal(size=(release_catalog.n_tracks, 4)).astype(np.float32)
    model._set_space(items)
    model.fitted = True
    requests = [Request(user=i, track=int(t), time=0.9, history=(int(t),), times=(0.9,), seed=i, day=2)
                for i, t in enumerate(rng.integers(0, 1500, 50))]
    answers = np.array([r.track for r in model.recommend_batch(requests)])
    assert (release_catalog.release_day[answers] > 0).all()


def test_cold_mix_sends_the_share_to_the_cold_recommender(small_catalog: Catalog) -> None:
    mix = ColdMixRecommender(small_catalog, base="sticky_artist", cold="random", share=0.3, salt=1)
    requests = _requests(small_catalog, 2000, seed=9)
    cold = cold_mask(requests, 0.3, 1)
    # Binomial(2000, 0.3): standard deviation 20.5; four of them.
    assert abs(cold.sum() - 600) < 4 * np.sqrt(2000 * 0.3 * 0.7)
    # A request's branch is its own: the same alone, in another batch, in another order.
    assert [bool(cold_mask([r], 0.3, 1)[0]) for r in requests[:100]] == cold[:100].tolist()
    assert (cold_mask(requests[::-1], 0.3, 1) == cold[::-1]).all()
    assert (cold_mask(requests, 0.3, 2) != cold).any()  # the salt re-draws
    answers = mix.recommend_batch(requests)
    base, other = mix.base.recommend_batch(requests), mix.cold.recommend_batch(requests)
    for answer, is_cold, b, c in zip(answers, cold, base, other, strict=True):
        expected = c if is_cold else b
        assert answer.track == expected.track
        if expected.propensity is not None:
            assert answer.propensity == pytest.approx(expected.propensity * (0.3 if is_cold else 0.7))
    assert not cold_mask(requests, 0.0).any() and cold_mask(requests, 1.0).all()


def test_cold_mix_params_are_validated(small_catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="share"):
        ColdMixRecommender(small_catalog, base="sticky_artist", cold="random", share=1.5)
    with pytest.raises(ValueError, match="cold"):
        ColdMixRecommender(small_catalog, base="sticky_artist")
    with pytest.raises(registry.RegistryError, match="no_such"):
        ColdMixRecommender(small_catalog, base="no_such", cold="random")
    with pytest.raises(registry.RegistryError, match="needs an artifact"):
        ColdMixRecommender(small_catalog, base="sticky_artist", cold="content")


def test_cold_mix_serves_a_trained_content_model(trained: ContentRecommender, small_catalog: Catalog, tmp_path: Path) -> None:
    artifact = trained.save(tmp_path / "content")
    mix = ColdMixRecommender(small_catalog, base="sticky_artist", cold="content", cold_artifact=str(artifact), share=1.0)
    requests = _requests(small_catalog)
    assert [r.track for r in mix.recommend_batch(requests)] == [r.track for r in trained.recommend_batch(requests)]


def test_train_command_prints_the_held_out_retrieval(two_day_log_path: Path, small_world_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "content.yml"
    config.write_text(yaml.safe_dump({**QUICK_YAML, "epochs": 1}))
    result = CliRunner().invoke(main, ["train", "content", "--events", str(two_day_log_path), "--world", str(small_world_dir),
                                       "--out", str(tmp_path / "content"), "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "content -> behaviour" in result.output and "mean frames (no training)" in result.output and "Recall@10" in result.output
    assert sorted(path.name for path in (tmp_path / "content").iterdir()) == ["model.json", "weights.npz"]
    config.write_text(yaml.safe_dump({"behaviour": "dssm"}))
    result = CliRunner().invoke(main, ["train", "content", "--events", str(two_day_log_path), "--world", str(small_world_dir),
                                       "--out", str(tmp_path / "bad"), "--config", str(config), "--quiet"])
    assert result.exit_code != 0 and "behaviour_artifact" in result.output


def test_untrained_content_tower_ranks_like_the_mean_frames() -> None:
    """The linear map starts as the identity and the transformer residual at zero: before any
    training the content tower is the (normalised) mean of the valid frames."""
    torch.manual_seed(0)
    net = TwoTower(4, 6, EncoderConfig(d_model=8, heads=2, layers=1, feedforward=16, dropout=0.0), embedding=4, hidden=7, temperature=0.1).eval()
    frames = torch.randn(3, 5, 4)
    lengths = torch.tensor([5, 2, 1])
    frames[1, 2:] = 7.0  # padding must not enter the mean
    frames[2, 1:] = -3.0
    expected = torch.stack([frames[0].mean(0), frames[1, :2].mean(0), frames[2, 0]])
    with torch.no_grad():
        torch.testing.assert_close(net.content(frames, lengths), torch.nn.functional.normalize(expected, dim=1))


def test_a_frozen_content_tower_reproduces_the_mean_frames_baseline(split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog) -> None:
    """With the content tower's learning rate at zero, content -> content retrieval is the
    mean-frames baseline itself: the two rows are computed on the same held-out tracks and truth."""
    config = QUICK.model_copy(update={"epochs": 2, "content_lr_scale": 0.0, "embedding": small_catalog.frame_dim})
    metrics = ContentRecommender(small_catalog).fit(split_log[0], config=config).metrics
    for key in ("recall@10", "recall@50", "f2", "selected"):
        assert metrics[f"content_only_{key}"] == pytest.approx(metrics[f"baseline_{key}"], abs=1e-6), key


def test_early_stopping_keeps_the_best_validation_epoch(trained: ContentRecommender) -> None:
    metrics, history = trained.metrics, trained.history
    scores = [h["val_recall@10"] for h in history]
    best = metrics["best_epoch"]
    assert 0 <= best <= len(history) and metrics["query"] in ("behaviour", "content")
    assert metrics["val_recall@10"] >= max(scores)  # the kept weights score best, untrained ones included
    if best > 0:
        assert scores[best - 1] == metrics["val_recall@10"]
    assert len(history) == min(QUICK.epochs, best + QUICK.patience)  # stopped `patience` epochs after the best
    queries, items, warm = trained._arrays["queries"], trained._arrays["items"], trained._arrays["warm"]
    if metrics["query"] == "content":
        np.testing.assert_array_equal(queries, items)
    else:
        assert not np.allclose(queries[warm], items[warm])
