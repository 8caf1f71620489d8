"""Training of the learned models: deterministic for a seed, the loss goes down, bad configs are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts.catalog import Catalog
from recommenders.models.bpr_knn import BPRKNNRecommender
from recommenders.models.config import BPRKNNConfig, ConfigError, DSSMConfig, load_config
from recommenders.models.dssm import DSSMRecommender
from recommenders.models.nn import TrainingError
from recommenders.models.sessions import SessionLog

MODELS = {"dssm": (DSSMRecommender, "dssm_config"), "bpr_knn": (BPRKNNRecommender, "bpr_config")}


def _weights(model: DSSMRecommender | BPRKNNRecommender, directory: Path) -> dict[str, np.ndarray]:
    model.save(directory)
    with np.load(directory / "weights.npz", allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_model_other_seed_other_model(
    name: str, split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cls, config_fixture = MODELS[name]
    config = request.getfixturevalue(config_fixture).model_copy(update={"epochs": 2})
    train, _ = split_log
    first, second = cls(small_catalog).fit(train, config=config), cls(small_catalog).fit(train, config=config)
    other = cls(small_catalog).fit(train, config=config.model_copy(update={"seed": config.seed + 1}))
    a, b, c = (_weights(model, tmp_path / str(i)) for i, model in enumerate((first, second, other)))
    assert a.keys() == b.keys() and all(np.array_equal(a[key], b[key]) for key in a)
    assert [record["train_loss"] for record in first.history] == [record["train_loss"] for record in second.history]
    assert not all(np.array_equal(a[key], c[key]) for key in a)


def test_dssm_loss_decreases(split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog, dssm_config: DSSMConfig) -> None:
    model = DSSMRecommender(small_catalog).fit(split_log[0], config=dssm_config)
    train_loss = [record["train_loss"] for record in model.history]
    val_loss = [record["val_loss"] for record in model.history]
    assert len(train_loss) == dssm_config.epochs  # no early stop on this log: the loss still improves
    assert all(later < earlier for earlier, later in zip(train_loss, train_loss[1:], strict=False))
    assert min(val_loss) < val_loss[0] - 0.1
    # The chance level: a softmax over the positive, the other in-batch targets and the sampled negatives.
    assert train_loss[-1] < np.log(dssm_config.batch_size + dssm_config.sampled_negatives)


def test_bpr_loss_decreases_and_validation_mrr_rises(split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog, bpr_config: BPRKNNConfig) -> None:
    model = BPRKNNRecommender(small_catalog).fit(split_log[0], config=bpr_config)
    train_loss = [record["train_loss"] for record in model.history]
    assert train_loss[-1] < train_loss[0] - 0.1
    assert max(record["val_mrr"] for record in model.history) > model.history[0]["val_mrr"]
    assert model.data["paired_users"] > 0 and model.data["mean_candidates"] > 0


def test_training_stops_early_on_a_plateau(split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog, dssm_config: DSSMConfig) -> None:
    # A validation loss that must improve by 10 nats per epoch is on a plateau right after the first
    # epoch (which improves on infinity): training stops `patience` epochs later.
    config = dssm_config.model_copy(update={"epochs": 20, "early_stopping_min_delta": 10.0, "early_stopping_patience": 2, "lr_reduce_min_delta": 10.0})
    model = DSSMRecommender(small_catalog).fit(split_log[0], config=config)
    assert len(model.history) == 1 + 2
    # ... and the learning rate drops after each epoch on the plateau (patience 1).
    assert [record["lr"] for record in model.history] == pytest.approx([config.lr, config.lr, config.lr * config.lr_reduce_factor])


def test_write_up_defaults() -> None:
    dssm, bpr = DSSMConfig(), BPRKNNConfig()
    assert (dssm.hidden_dim, dssm.embedding_dim, dssm.weight_decay, dssm.epochs) == (64, 96, 1e-3, 50)
    assert (dssm.lr_reduce_min_delta, dssm.early_stopping_min_delta) == (0.002, 0.001)
    assert (bpr.embedding_dim, bpr.negatives, bpr.batch_size, bpr.lr, bpr.max_neighbours) == (128, 4, 16_384, 0.005, 50)


def test_bad_configs_are_named(tmp_path: Path) -> None:
    path = tmp_path / "dssm.yml"
    path.write_text("hidden_dim: 0\nembeding_dim: 32\n")
    with pytest.raises(ConfigError) as error:
        load_config(DSSMConfig, path)
    assert "hidden_dim" in str(error.value) and "embeding_dim: unknown key" in str(error.value)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(DSSMConfig, path)
    with pytest.raises(ConfigError, match="min_candidates == 300, must be <= candidates == 200"):
        load_config(BPRKNNConfig, None, min_candidates=300)
    assert load_config(DSSMConfig, None, seed=5, epochs=None).seed == 5


def test_too_little_data_is_a_training_error(split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog, dssm_config: DSSMConfig) -> None:
    one_session = split_log[0].select(np.arange(split_log[0].n_sessions) == 0)
    with pytest.raises(TrainingError, match="at least 2 sessions"):
        DSSMRecommender(small_catalog).fit(one_session, config=dssm_config)
    with pytest.raises(TrainingError, match="not available"):
        DSSMRecommender(small_catalog).fit(split_log[0], config=dssm_config, device="cuda") if not _cuda() else pytest.skip("CUDA present")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
