"""`recommenders train` and `recommenders evaluate` through click's CliRunner: the happy path and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from recommenders.cli import main
from tests.recommenders.models.conftest import BPR_FAST, DSSM_FAST

CONFIGS = {"dssm": DSSM_FAST, "bpr_knn": BPR_FAST}


@pytest.fixture(scope="module")
def trained(two_day_log_path: Path, small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Each model trained by the command on day 1 (day 2 held out): (artifact, the command's output)."""
    root = tmp_path_factory.mktemp("cli")
    out: dict[str, tuple[Path, str]] = {}
    for name, config in CONFIGS.items():
        config_path = root / f"{name}.yml"
        config_path.write_text(yaml.safe_dump(config))
        artifact = root / name
        result = CliRunner().invoke(main, [
            "train", name, "--events", str(two_day_log_path), "--world", str(small_world_dir), "--out", str(artifact),
            "--config", str(config_path), "--holdout-days", "1", "--seed", "3", "--quiet",
        ])
        assert result.exit_code == 0, result.output
        out[name] = (artifact, result.output)
    return out


@pytest.mark.parametrize("name", CONFIGS)
def test_train_writes_an_artifact_and_a_summary(name: str, trained: dict[str, tuple[Path, str]]) -> None:
    artifact, output = trained[name]
    assert sorted(path.name for path in artifact.iterdir()) == ["model.json", "weights.npz"]
    metadata = json.loads((artifact / "model.json").read_text())
    assert metadata["model"] == name and metadata["config"]["seed"] == 3
    assert metadata["data"]["last_session_start"].startswith("2024-01-01")  # day 2 held out
    assert metadata["config"]["epochs"] == CONFIGS[name]["epochs"]
    assert "holding out" in output and "(2024-01-02)" in output
    assert "s per epoch" in output and f"artifact: {artifact}" in output


@pytest.mark.parametrize("name", CONFIGS)
def test_evaluate_compares_with_the_baselines(name: str, trained: dict[str, tuple[Path, str]], two_day_log_path: Path, small_world_dir: Path) -> None:
    result = CliRunner().invoke(main, [
        "evaluate", name, "--artifact", str(trained[name][0]), "--events", str(two_day_log_path), "--world", str(small_world_dir), "--format", "json",
        "--save",
    ])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    saved = json.loads((trained[name][0] / "evaluation.json").read_text())  # --save: beside model.json, for the dashboard
    assert saved["rows"] == rows and saved["settings"]["test"] == "2024-01-02" and saved["settings"]["cases"] == rows[0]["cases"]
    assert [row["name"] for row in rows] == [name, "random", "top_pop", "sticky_artist"]
    assert {"cases", "mrr", "hit@1", "hit@5", "hit@10", "recall@10", "ndcg@10"} <= set(rows[0])
    assert len({row["cases"] for row in rows}) == 1 and rows[0]["cases"] > 100
    assert rows[0]["mrr"] > rows[1]["mrr"]  # beats random (asserted with its tolerance in test_learned_evaluation)
    assert "(2024-01-02)" in result.stderr  # the test day


def _train(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["train", *args])
    return result.exit_code, result.output


def test_train_errors_say_what_is_wrong(two_day_log_path: Path, small_world_dir: Path, tmp_path: Path) -> None:
    common = ["--events", str(two_day_log_path), "--world", str(small_world_dir), "--out", str(tmp_path / "out")]
    code, output = _train("no_such_model", *common)
    assert code == 1 and "no_such_model" in output
    code, output = _train("random", *common)
    assert code == 1 and "not trainable" in output
    bad = tmp_path / "bad.yml"
    bad.write_text("embeding_dim: 8\nlr: -1\n")
    code, output = _train("dssm", *common, "--config", str(bad))
    assert code == 1 and "embeding_dim: unknown key" in output and "lr: Input should be greater than 0" in output
    code, output = _train("dssm", *common, "--holdout-days", "2")
    assert code == 1 and "spans 2 simulated day(s)" in output
    code, output = _train("dssm", "--events", str(tmp_path / "missing.duckdb"), "--world", str(small_world_dir), "--out", str(tmp_path / "o"))
    assert code == 1 and "missing.duckdb" in output
    csv = tmp_path / "events.csv"
    csv.write_text("user,track,time\n1,2,0.5\n")
    code, output = _train("dssm", "--events", str(csv), "--world", str(small_world_dir), "--out", str(tmp_path / "o"))
    assert code == 1 and f"event log {csv} is neither a DuckDB database nor a Parquet file" in output
    code, output = _train("dssm", "--events", str(two_day_log_path), "--world", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 1 and str(tmp_path) in output
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_to_test_on_training_data(two_day_log_path: Path, small_world_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "bpr.yml"
    config.write_text(yaml.safe_dump({**BPR_FAST, "epochs": 1}))
    artifact = tmp_path / "all_days"
    code, output = _train("bpr_knn", "--events", str(two_day_log_path), "--world", str(small_world_dir), "--out", str(artifact), "--config", str(config), "--quiet")
    assert code == 0, output
    result = CliRunner().invoke(main, ["evaluate", "bpr_knn", "--artifact", str(artifact), "--events", str(two_day_log_path), "--world", str(small_world_dir)])
    assert result.exit_code == 1 and "would leak" in result.output
    result = CliRunner().invoke(main, ["evaluate", "random", "--artifact", str(artifact), "--events", str(two_day_log_path), "--world", str(small_world_dir)])
    assert result.exit_code == 1 and "takes no artifact" in result.output


def test_train_reads_the_parquet_export_like_the_duckdb_log(two_day_log_path: Path, small_world_dir: Path, tmp_path: Path) -> None:
    import duckdb
    import numpy as np

    export = tmp_path / "events.parquet"
    with duckdb.connect(str(two_day_log_path), read_only=True) as connection:
        connection.execute(f"COPY events TO '{export}' (FORMAT parquet)")
    config = tmp_path / "bpr.yml"
    config.write_text(yaml.safe_dump({**BPR_FAST, "epochs": 2}))
    weights = {}
    for log in (two_day_log_path, export):
        artifact = tmp_path / log.suffix.lstrip(".")
        code, output = _train("bpr_knn", "--events", str(log), "--world", str(small_world_dir), "--out", str(artifact),
                              "--config", str(config), "--holdout-days", "1", "--quiet")
        assert code == 0, output
        with np.load(artifact / "weights.npz", allow_pickle=False) as archive:
            weights[log.suffix] = {name: archive[name] for name in archive.files}
    duck, parquet = weights[".duckdb"], weights[".parquet"]
    assert sorted(duck) == sorted(parquet)
    for name in duck:  # same events, same seed: the same model, whichever file the log came in
        np.testing.assert_array_equal(duck[name], parquet[name], err_msg=name)


def _with_world(log: Path, copy: Path, fingerprint: str) -> Path:
    """A copy of `log` whose `worlds` table says a service of world `fingerprint` wrote it."""
    import shutil

    import duckdb

    shutil.copy(log, copy)
    with duckdb.connect(str(copy)) as connection:
        connection.execute("CREATE TABLE worlds (started TIMESTAMP, fingerprint VARCHAR, path VARCHAR, tracks BIGINT)")
        connection.execute("INSERT INTO worlds VALUES (TIMESTAMP '2024-01-01', ?, '/elsewhere/world', 3000)", [fingerprint])
    return copy


def test_a_log_of_another_world_is_refused(two_day_log_path: Path, small_world_dir: Path, tmp_path: Path) -> None:
    from contracts.catalog import world_fingerprint

    ours = world_fingerprint(small_world_dir)
    other = _with_world(two_day_log_path, tmp_path / "other.duckdb", "0" * 16)
    config = tmp_path / "bpr.yml"
    config.write_text(yaml.safe_dump({**BPR_FAST, "epochs": 1}))
    common = ["--world", str(small_world_dir), "--out", str(tmp_path / "out"), "--config", str(config), "--quiet"]

    code, output = _train("bpr_knn", "--events", str(other), *common)

    assert code == 1
    assert "/elsewhere/world (fingerprint 0000000000000000)" in output and f"fingerprint {ours}" in output
    assert not (tmp_path / "out").exists()
    same = _with_world(two_day_log_path, tmp_path / "same.duckdb", ours)
    code, output = _train("bpr_knn", "--events", str(same), *common)
    assert code == 0, output


def test_train_top_pop_writes_an_artifact_the_registry_serves(two_day_log_path: Path, small_world_dir: Path, tmp_path: Path) -> None:
    # top_pop is a Fittable: trained from the log it ranks by the log's listening, not by the prior.
    import numpy as np

    from contracts.catalog import Catalog
    from recommenders import registry
    from recommenders.builtin.top_pop import TopPopRecommender
    from recommenders.dataset import Dataset

    out = tmp_path / "top_pop"
    result = CliRunner().invoke(main, ["train", "top_pop", "--events", str(two_day_log_path), "--world", str(small_world_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    catalog = Catalog(small_world_dir)
    served = registry.make("top_pop", catalog, artifact=out)
    expected = TopPopRecommender(catalog).fit(Dataset.from_log(two_day_log_path))
    # The session log keeps listen times as float32: equal up to that rounding.
    assert served.fitted and np.allclose(served.scores, expected.scores, rtol=1e-6, atol=0) and expected.scores.sum() > 0
    assert not np.array_equal(served.ranking()[:10], TopPopRecommender(catalog).ranking()[:10])
    refused = CliRunner().invoke(main, ["train", "top_pop", "--events", str(two_day_log_path), "--world", str(small_world_dir), "--out", str(out), "--threads", "2"])
    assert refused.exit_code != 0 and "takes no training config" in refused.output
