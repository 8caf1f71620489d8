"""Corrupt artifacts and artifacts of another world: refused at load with one line, by every entry point."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from contracts.catalog import Catalog, world_fingerprint
from recommenders import registry
from recommenders.base import ArtifactError
from recommenders.builtin.top_pop import TopPopRecommender
from recommenders.cli import main as recommenders_cli

REPO = Path(__file__).parents[3]


@pytest.fixture(scope="module")
def twin_world(small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small world's files under another seed in world.yml: every size agrees, only the fingerprint differs."""
    twin = tmp_path_factory.mktemp("twin") / "world"
    shutil.copytree(small_world_dir, twin)
    manifest = yaml.safe_load((twin / "world.yml").read_text())
    manifest["config"]["seed"] += 1
    (twin / "world.yml").write_text(yaml.safe_dump(manifest))
    assert world_fingerprint(twin) != world_fingerprint(small_world_dir)
    return twin


def copy_artifact(artifact: Path, tmp_path: Path) -> Path:
    target = tmp_path / artifact.name
    shutil.copytree(artifact, target)
    return target


def serve(tmp_path: Path, world: Path, artifact: Path) -> subprocess.CompletedProcess[str]:
    """`botify serve` (a real process) with a bpr_knn treatment served from `artifact`; it should not start."""
    experiments = tmp_path / "experiments.yml"
    treatments = [{"recommender": "random"}, {"recommender": "bpr_knn", "artifact": str(artifact)}]
    experiments.write_text(yaml.safe_dump({"experiments": [{"name": "e", "serving": True, "treatments": treatments}]}))
    command = [sys.executable, "-m", "botify", "serve", "--world", str(world), "--experiments", str(experiments),
               "--log", str(tmp_path / "events.duckdb"), "--port", "1"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    assert "Traceback" not in output and "Aborted" not in output
    return lines[0]


def test_artifacts_record_the_world_they_were_trained_on(artifacts: dict[str, Path], small_world_dir: Path) -> None:
    for artifact in artifacts.values():
        recorded = json.loads((artifact / "model.json").read_text())["world"]
        assert recorded == {"fingerprint": world_fingerprint(small_world_dir), "path": str(small_world_dir), "tracks": 3000}


def test_an_artifact_of_another_world_is_refused_by_botify_serve(artifacts: dict[str, Path], twin_world: Path, tmp_path: Path) -> None:
    done = serve(tmp_path, twin_world, artifacts["bpr_knn"])
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert f"artifact {artifacts['bpr_knn']} was trained on world" in line
    assert world_fingerprint(twin_world) in line and json.loads((artifacts["bpr_knn"] / "model.json").read_text())["world"]["fingerprint"] in line
    assert str(twin_world) in line and "retrain it on this world" in line


def test_a_truncated_weights_file_is_one_line_for_serve_check_and_evaluate(
    artifacts: dict[str, Path], small_world_dir: Path, two_day_log_path: Path, tmp_path: Path
) -> None:
    artifact = copy_artifact(artifacts["bpr_knn"], tmp_path)
    weights = artifact / "weights.npz"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        registry.make("bpr_knn", Catalog(small_world_dir), artifact=artifact)
    done = serve(tmp_path, small_world_dir, artifact)
    assert done.returncode == 1 and str(weights) in one_line(done.stderr)
    runner = CliRunner()
    checked = runner.invoke(recommenders_cli, ["check", "bpr_knn", "--world", str(small_world_dir), "--artifact", str(artifact)])
    assert checked.exit_code == 1 and str(weights) in one_line(checked.output)
    evaluated = runner.invoke(recommenders_cli, ["evaluate", "bpr_knn", "--artifact", str(artifact), "--events", str(two_day_log_path),
                                                 "--world", str(small_world_dir)])
    assert evaluated.exit_code == 1 and str(weights) in one_line(evaluated.output)


def test_a_manifest_artifact_of_another_world_is_refused(small_world_dir: Path, twin_world: Path, tmp_path: Path) -> None:
    events = pd.DataFrame({"user": [1, 1, 2], "track": [5, 6, 5], "time": [1.0, 0.5, 1.0]})
    TopPopRecommender(Catalog(small_world_dir)).fit(events).save(tmp_path / "top_pop")
    assert TopPopRecommender(Catalog(small_world_dir)).load(tmp_path / "top_pop").scores[5] == 2.0
    with pytest.raises(ArtifactError, match=f"was trained on world {small_world_dir} .fingerprint {world_fingerprint(small_world_dir)}"):
        TopPopRecommender(Catalog(twin_world)).load(tmp_path / "top_pop")


def test_an_artifact_without_a_world_record_still_loads(artifacts: dict[str, Path], small_world_dir: Path, tmp_path: Path) -> None:
    artifact = copy_artifact(artifacts["bpr_knn"], tmp_path)
    metadata = json.loads((artifact / "model.json").read_text())
    del metadata["world"]  # as written before artifacts recorded their world
    (artifact / "model.json").write_text(json.dumps(metadata))
    assert registry.make("bpr_knn", Catalog(small_world_dir), artifact=artifact).fitted


def test_train_on_a_truncated_world_is_one_line(small_world_dir: Path, two_day_log_path: Path, tmp_path: Path) -> None:
    world = tmp_path / "world"
    shutil.copytree(small_world_dir, world)
    frames = world / "public" / "frames.npy"
    frames.write_bytes(frames.read_bytes()[:1000])
    result = CliRunner().invoke(recommenders_cli, ["train", "bpr_knn", "--events", str(two_day_log_path), "--world", str(world),
                                                   "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1
    assert str(frames) in one_line(result.output) and "truncated" in result.output
    assert not (tmp_path / "out").exists()


def rewrite_weights(artifact: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Load the artifact's arrays, `change` them in place, and save them back (a well-formed archive)."""
    with np.load(artifact / "weights.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    np.savez(artifact / "weights.npz", **arrays)


def halve(name: str) -> Callable[[dict[str, np.ndarray]], None]:
    def cut(arrays: dict[str, np.ndarray]) -> None:
        arrays[name] = arrays[name][: len(arrays[name]) // 2]

    return cut


def drop(name: str) -> Callable[[dict[str, np.ndarray]], None]:
    def remove(arrays: dict[str, np.ndarray]) -> None:
        del arrays[name]

    return remove


# (model, how the arrays are broken, words of the error): archives that open fine but whose arrays
# do not fit the model; before they were checked, these loaded and answered 500 (or wrong tracks) later.
INCONSISTENT = [
    ("bpr_knn", halve("item_factors"), "item_factors has"),
    ("bpr_knn", halve("user_factors"), "user_factors has"),
    ("bpr_knn", halve("neighbours"), "similarities has"),
    ("dssm", halve("net.user_tower.0.weight"), "does not fit recommender 'dssm'"),
    ("dssm", drop("content_mean"), "it lacks 'content_mean'"),
]


@pytest.mark.parametrize(("model", "change", "words"), INCONSISTENT, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(INCONSISTENT)])
def test_arrays_that_do_not_fit_the_model_are_refused_at_load(
    artifacts: dict[str, Path], small_world_dir: Path, tmp_path: Path, model: str, change: Callable, words: str
) -> None:
    artifact = copy_artifact(artifacts[model], tmp_path)
    rewrite_weights(artifact, change)

    with pytest.raises(ArtifactError, match=re.escape(words)) as error:
        registry.make(model, Catalog(small_world_dir), artifact=artifact)
    assert str(artifact) in str(error.value) and "\n" not in str(error.value)


def test_a_mixed_artifact_is_one_line_from_botify_serve(artifacts: dict[str, Path], small_world_dir: Path, tmp_path: Path) -> None:
    artifact = copy_artifact(artifacts["bpr_knn"], tmp_path)
    rewrite_weights(artifact, halve("item_factors"))

    done = serve(tmp_path, small_world_dir, artifact)

    assert done.returncode == 1 and "item_factors has" in one_line(done.stderr)
