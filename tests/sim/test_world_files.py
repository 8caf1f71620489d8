"""Corrupt or inconsistent world files: one line naming the file, from the library and from every entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from contracts.catalog import Catalog, CatalogError
from sim.world import World, generate_world, world_config_from_mapping

REPO = Path(__file__).parents[2]


def truncate(relative: str, keep: float = 0.5) -> Callable[[Path], None]:
    """Cut the file to `keep` of its bytes (0: empty), as a copy or a download cut short."""

    def cut(world: Path) -> None:
        path = world / relative
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return cut


def write(relative: str, text: str) -> Callable[[Path], None]:
    def put(world: Path) -> None:
        (world / relative).write_text(text)

    return put


# (case, how to break a copy of the small world, the file the error must name, words of the error)
CASES = [
    ("catalog", truncate("public/catalog.parquet"), "public/catalog.parquet", "not a readable Parquet file"),
    ("tags_indptr", truncate("public/tags_indptr.npy"), "public/tags_indptr.npy", "truncated"),
    ("tags_indices", truncate("public/tags_indices.npy"), "public/tags_indices.npy", "truncated"),
    ("frames", truncate("public/frames.npy"), "public/frames.npy", "truncated"),
    ("frame_offsets", truncate("public/frame_offsets.npy"), "public/frame_offsets.npy", "truncated"),
    ("empty_npy", truncate("public/tags_indices.npy", 0), "public/tags_indices.npy", "the file is empty"),
    ("hidden", truncate("hidden/track_taste.npy"), "hidden/track_taste.npy", "truncated"),
    ("hidden_empty", truncate("hidden/interest_nearest.npy", 0), "hidden/interest_nearest.npy", "the file is empty"),
    ("world_yml", write("world.yml", "format_version: 1\nconfig: [\n"), "world.yml", "not valid YAML"),
    ("world_yml_list", write("world.yml", "- 1\n"), "world.yml", "expected a mapping"),
]
PUBLIC_CASES = [case for case in CASES if not case[2].startswith("hidden/")]


@pytest.fixture(scope="module")
def other_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another, smaller world: its files are the right format but the wrong size for the small world."""
    config = {"seed": 3, "tracks": 500, "artists": 50, "genres": 4, "users": 60, "content": {"dim": 16, "min_frames": 4, "max_frames": 12}}
    return generate_world(world_config_from_mapping(config), tmp_path_factory.mktemp("other") / "w")


def broken(small_world_dir: Path, tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    world = tmp_path / "world"
    shutil.copytree(small_world_dir, world)
    damage(world)
    return world


def assert_one_line(output: str, world: Path, relative: str, words: str) -> None:
    """One line (click's "Error: ..."), naming the damaged file, saying what is wrong, no traceback."""
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: ") and str(world / relative) in lines[0] and words in lines[0], output
    assert "Traceback" not in output and "Aborted" not in output


@pytest.mark.parametrize(("case", "damage", "relative", "words"), CASES, ids=[case[0] for case in CASES])
def test_world_opening_names_the_file(small_world_dir: Path, tmp_path: Path, case: str, damage: Callable, relative: str, words: str) -> None:
    world = broken(small_world_dir, tmp_path, damage)
    with pytest.raises(CatalogError) as raised:
        World(world)
    message = str(raised.value)
    assert "\n" not in message and str(world / relative) in message and words in message


@pytest.mark.parametrize(
    ("files", "relative", "words"),
    [
        (("tags_indptr.npy", "tags_indices.npy"), "public/tags_indptr.npy", "has 501 offsets, expected 3001"),
        (("frames.npy",), "public/frame_offsets.npy", "must equal the rows of frames.npy"),
        (("frame_offsets.npy",), "public/frame_offsets.npy", "has 501 offsets, expected 3001"),
    ],
    ids=["tags", "frames", "frame_offsets"],
)
def test_public_arrays_of_another_world_are_refused(
    small_world_dir: Path, other_world: Path, tmp_path: Path, files: tuple[str, ...], relative: str, words: str
) -> None:
    def swap(world: Path) -> None:
        for name in files:
            shutil.copy(other_world / "public" / name, world / "public" / name)

    world = broken(small_world_dir, tmp_path, swap)
    with pytest.raises(CatalogError, match=words) as raised:
        Catalog(world)
    assert str(world / relative) in str(raised.value)


def test_hidden_arrays_of_another_world_are_refused(small_world_dir: Path, other_world: Path, tmp_path: Path) -> None:
    world = broken(small_world_dir, tmp_path, lambda w: shutil.copy(other_world / "hidden" / "track_taste.npy", w / "hidden"))
    with pytest.raises(CatalogError, match="has 500 rows, expected 3000 .tracks.: is it from another world"):
        World(world)


def test_tag_indices_out_of_range_are_refused(small_world_dir: Path, tmp_path: Path) -> None:
    def corrupt(world: Path) -> None:
        path = world / "public" / "tags_indices.npy"
        indices = np.load(path)
        indices[5] = 999  # the small world has 256 tags
        np.save(path, indices)

    with pytest.raises(CatalogError, match=r"1 entries outside 0\.\.255"):
        Catalog(broken(small_world_dir, tmp_path, corrupt))


@pytest.mark.parametrize(("case", "damage", "relative", "words"), PUBLIC_CASES, ids=[case[0] for case in PUBLIC_CASES])
def test_botify_serve_and_recommenders_check_give_one_line(
    small_world_dir: Path, tmp_path: Path, case: str, damage: Callable, relative: str, words: str
) -> None:
    from botify.cli import main as botify
    from recommenders.cli import main as recommenders

    world = broken(small_world_dir, tmp_path, damage)
    runner = CliRunner()
    served = runner.invoke(botify, ["serve", "--world", str(world), "--log", str(tmp_path / "events.duckdb"), "--port", "1"])
    assert served.exit_code == 1
    assert_one_line(served.output, world, relative, words)
    checked = runner.invoke(recommenders, ["check", "random", "--world", str(world)])
    assert checked.exit_code == 1
    assert_one_line(checked.output, world, relative, words)


@pytest.mark.parametrize(("case", "damage", "relative", "words"), CASES, ids=[case[0] for case in CASES])
def test_sim_run_gives_one_line(small_world_dir: Path, tmp_path: Path, case: str, damage: Callable, relative: str, words: str) -> None:
    from sim.run.__main__ import main as sim_run

    world = broken(small_world_dir, tmp_path, damage)
    result = CliRunner().invoke(sim_run, ["--world", str(world), "--episodes", "3", "--recommender", "local:random", "--quiet"])
    assert result.exit_code == 1
    assert_one_line(result.output, world, relative, words)


def test_a_real_process_prints_one_line_and_exits_1(small_world_dir: Path, tmp_path: Path) -> None:
    """The empty .npy that once printed only "Aborted!": the real command, its stderr and exit status."""
    world = broken(small_world_dir, tmp_path, truncate("public/frame_offsets.npy", 0))
    command = [sys.executable, "-m", "sim.run", "--world", str(world), "--episodes", "3", "--recommender", "local:random", "--quiet"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert_one_line(done.stderr, world, "public/frame_offsets.npy", "the file is empty")


def test_sim_world_gives_one_line_for_a_bad_config(tmp_path: Path) -> None:
    from sim.world.__main__ import main as sim_world

    config = tmp_path / "world.yml"
    config.write_text("seed: [\n")
    result = CliRunner().invoke(sim_world, ["--config", str(config), "--out", str(tmp_path / "w"), "--quiet"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0] and "not valid YAML" in lines[0], result.output
    config.write_bytes(b"\xff\xfe\x00binary")
    result = CliRunner().invoke(sim_world, ["--config", str(config), "--out", str(tmp_path / "w"), "--quiet"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [f"Error: {config}: not a text file (not UTF-8), expected YAML"]
