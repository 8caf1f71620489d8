"""MLflow tracking of `recommenders train` and `evaluate`: runs land in the store with their parameters, metrics and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from recommenders.cli import main
from recommenders.tracking import flatten, numeric, store_uri
from tests.recommenders.models.conftest import BPR_FAST


@pytest.fixture(scope="module")
def tracked(two_day_log_path: Path, small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """bpr_knn trained and evaluated by the commands, both tracked in a fresh local store."""
    root = tmp_path_factory.mktemp("tracked")
    store, artifact = root / "mlruns", root / "bpr_knn"
    config = root / "bpr.yml"
    config.write_text(yaml.safe_dump(BPR_FAST))
    env = {"BOTIFY_NO_TRACK": ""}  # tracking on for these commands only
    common = ["--events", str(two_day_log_path), "--world", str(small_world_dir), "--tracking-uri", str(store)]
    trained = CliRunner(env=env).invoke(main, ["train", "bpr_knn", *common, "--out", str(artifact), "--config", str(config),
                                               "--holdout-days", "1", "--seed", "3", "--quiet"])
    assert trained.exit_code == 0, trained.output
    evaluated = CliRunner(env=env).invoke(main, ["evaluate", "bpr_knn", *common, "--artifact", str(artifact), "--format", "json"])
    assert evaluated.exit_code == 0, evaluated.output
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store_uri(str(store))[0])
    runs = {}
    for name in ("train", "evaluate"):
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None, f"no MLflow experiment {name!r} in the store"
        (run,) = client.search_runs([experiment.experiment_id])
        runs[name] = run
    return {"client": client, "runs": runs, "train_output": trained.output}


def test_train_records_its_config_history_and_artifact(tracked: dict) -> None:
    client, run = tracked["client"], tracked["runs"]["train"]
    assert run.info.status == "FINISHED" and run.info.run_name == "train bpr_knn"
    assert run.data.params["model"] == "bpr_knn" and run.data.params["config.seed"] == "3"
    assert run.data.params["config.embedding_dim"] == str(BPR_FAST["embedding_dim"])
    history = client.get_metric_history(run.info.run_id, "val_mrr")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and len(history) >= 2  # one value per epoch
    assert all(0.0 < m.value <= 1.0 for m in history)
    files = {item.path for item in client.list_artifacts(run.info.run_id, "artifact")}
    assert files == {"artifact/model.json", "artifact/weights.npz"}
    assert f"tracked: run {run.info.run_id}" in tracked["train_output"]


def test_evaluate_records_the_offline_table(tracked: dict, tmp_path: Path) -> None:
    client, run = tracked["client"], tracked["runs"]["evaluate"]
    assert run.data.params["model"] == "bpr_knn" and run.data.params["negatives"] == "50"
    assert 0.0 < run.data.metrics["mrr"] <= 1.0 and "hit_at_10" in run.data.metrics
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "offline.json", str(tmp_path))).read_text())
    rows = dict(zip(table["columns"], zip(*table["data"], strict=True), strict=True))
    assert list(rows["name"]) == ["bpr_knn", "random", "top_pop", "sticky_artist"]
    assert rows["mrr"][0] == pytest.approx(run.data.metrics["mrr"])


def test_no_track_records_nothing(two_day_log_path: Path, small_world_dir: Path, tmp_path: Path) -> None:
    result = CliRunner(env={"BOTIFY_NO_TRACK": ""}).invoke(main, [
        "train", "top_pop", "--events", str(two_day_log_path), "--world", str(small_world_dir), "--out", str(tmp_path / "a"),
        "--tracking-uri", str(tmp_path / "mlruns"), "--no-track",
    ])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "mlruns").exists() and "tracked:" not in result.output


def test_parameters_flatten_and_metrics_keep_finite_numbers() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": None}) == {"a.b": "1", "a.c.d": "x", "e": "None"}
    assert numeric({"mrr": 0.5, "hit@10": 1, "n": float("nan"), "ok": True, "name": "x"}) == {"mrr": 0.5, "hit_at_10": 1.0}
    assert store_uri("http://host:5000") == ("http://host:5000", None)
    uri, artifacts = store_uri("/tmp/store")
    assert uri == "sqlite:////tmp/store/mlflow.db" and artifacts == "file:///tmp/store/artifacts"
