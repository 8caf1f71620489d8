"""`recommenders tune`: a tiny Ray Tune search is reproducible under a seed and writes a config that trains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from recommenders.cli import main
from recommenders.models.config import SEARCH_SPACES, BPRKNNConfig
from recommenders.tuning import Row, leaderboard
from tests.recommenders.models.conftest import BPR_FAST

TRIALS = 3


@pytest.fixture(scope="module", autouse=True)
def ray_once() -> Iterator[None]:
    """One Ray runtime on one CPU for the module: the command reuses it instead of starting its own."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def tune(log: Path, world: Path, out: Path, *extra: str) -> str:
    base = out.parent / f"{out.name}-base.yml"
    base.write_text(yaml.safe_dump(BPR_FAST))
    result = CliRunner().invoke(main, [
        "tune", "bpr_knn", "--events", str(log), "--world", str(world), "--out", str(out), "--config", str(base),
        "--trials", str(TRIALS), "--rungs", "2", "--seed", "5", *extra,
    ])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def searched(two_day_log_path: Path, small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The same offline search (training and serving) run twice with one seed."""
    root = tmp_path_factory.mktemp("tune")
    first = tune(two_day_log_path, small_world_dir, root / "a")
    tune(two_day_log_path, small_world_dir, root / "b")
    return root / "a", root / "b", first


def test_a_seeded_search_is_reproducible(searched: tuple[Path, Path, str]) -> None:
    a, b, _ = searched
    first, second = pd.read_csv(a / "leaderboard.csv"), pd.read_csv(b / "leaderboard.csv")
    assert len(first) == TRIALS and first["error"].isna().all()
    pd.testing.assert_frame_equal(first, second)
    assert (a / "train.yml").read_text() == (b / "train.yml").read_text()
    assert (a / "serving.yml").read_text() == (b / "serving.yml").read_text()
    assert first["train.lr"].nunique() == TRIALS  # the trials tried other configs, not one config thrice


def test_the_best_config_is_the_leaderboard_top_and_searched_values(searched: tuple[Path, Path, str]) -> None:
    a, _, output = searched
    board = pd.read_csv(a / "leaderboard.csv")
    best = board.iloc[0]
    assert best["rungs"] == 2 and best["score"] == board.loc[board["rungs"] == 2, "score"].max()
    config = BPRKNNConfig.model_validate(yaml.safe_load((a / "train.yml").read_text()))
    space = SEARCH_SPACES["bpr_knn"]
    assert config.lr == pytest.approx(best["train.lr"]) and space.train["lr"].low <= config.lr <= space.train["lr"].high
    assert config.epochs == BPR_FAST["epochs"]  # the base config's keys that were not searched are kept
    serving = yaml.safe_load((a / "serving.yml").read_text())
    assert set(serving) == set(space.serve) and serving["artist_weight"] == pytest.approx(best["serve.artist_weight"])
    assert f"best: trial {int(best['trial'])}, score {best['score']:.4f}" in output


def test_the_written_config_trains(searched: tuple[Path, Path, str], two_day_log_path: Path, small_world_dir: Path, tmp_path: Path) -> None:
    a, _, _ = searched
    serving = yaml.safe_load((a / "serving.yml").read_text())
    trained = CliRunner().invoke(main, [
        "train", "bpr_knn", "--events", str(two_day_log_path), "--world", str(small_world_dir), "--out", str(tmp_path / "model"),
        "--config", str(a / "train.yml"), "--holdout-days", "1", "--quiet",
    ])
    assert trained.exit_code == 0, trained.output
    evaluated = CliRunner().invoke(main, [
        "evaluate", "bpr_knn", "--artifact", str(tmp_path / "model"), "--events", str(two_day_log_path), "--world", str(small_world_dir),
        "--format", "json", "--baselines", "", "--seed", "5", *[f"--param={key}={value}" for key, value in serving.items()],
    ])
    assert evaluated.exit_code == 0, evaluated.output
    board = pd.read_csv(a / "leaderboard.csv")
    assert json.loads(evaluated.stdout)[0]["mrr"] == pytest.approx(board["score"][0], rel=1e-12)  # the search's score, reproduced by the commands


def test_an_online_search_runs_through_the_simulator(two_day_log_path: Path, small_world_dir: Path, tmp_path: Path) -> None:
    output = tune(two_day_log_path, small_world_dir, tmp_path / "online", "--objective", "online", "--search", "serving", "--episodes", "60",
                  "--holdout-days", "1")
    board = pd.read_csv(tmp_path / "online" / "leaderboard.csv")
    assert len(board) == TRIALS and board["error"].isna().all() and board["score"].between(-1.0, 10.0).all()
    assert "online search against sticky_artist" in output and "simulating 60 arrivals on 2024-01-02" in output


def test_leaderboard_puts_finished_trials_first() -> None:
    rows = [Row(1, 0.9, 1, {}, {}), Row(2, 0.5, 3, {}, {}), Row(3, 0.7, 3, {}, {}), Row(4, float("nan"), 0, {}, {}, error="boom")]
    assert [row.trial for row in leaderboard(rows, rungs=3)] == [3, 2, 1, 4]


@pytest.mark.parametrize(("args", "message"), [
    (["tune", "random"], "has no search space"),
    (["tune", "bpr_knn", "--param", "artist_weight=1"], "artist_weight is searched"),
])
def test_bad_input_gets_one_line(args: list[str], message: str, two_day_log_path: Path, small_world_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [*args, "--events", str(two_day_log_path), "--world", str(small_world_dir), "--out", str(tmp_path)])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
