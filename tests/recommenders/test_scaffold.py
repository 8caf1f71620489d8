"""`recommenders new`: the generated plugin package installs, registers, passes the contract and its own tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recommenders.cli import main

NAME = "scaffolded_probe"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("My-Model", "must be lower case letters, digits and underscores"),
        ("1model", "starting with a letter"),
        ("class", "is a Python keyword"),
        ("sticky_artist", "is already registered"),
    ],
)
def test_bad_names_are_refused(runner: CliRunner, tmp_path: Path, name: str, message: str) -> None:
    result = runner.invoke(main, ["new", name, "--dir", str(tmp_path / "plugin")])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "plugin").exists()


def test_an_existing_directory_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "plugin").mkdir()
    result = runner.invoke(main, ["new", NAME, "--dir", str(tmp_path / "plugin")])
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert list((tmp_path / "plugin").iterdir()) == []


@pytest.mark.slow  # builds and installs the package, then runs the check and its tests in subprocesses
def test_generated_package_installs_and_passes_check_and_its_tests(runner: CliRunner, tmp_path: Path, small_world_dir: Path) -> None:
    package = tmp_path / "plugin"
    result = runner.invoke(main, ["new", NAME, "--dir", str(package)])
    assert result.exit_code == 0, result.output
    workflow = (package / ".github" / "workflows" / "ci.yml").read_text()
    assert f"recommenders check {NAME}" in workflow and f"python -m sim.gate {NAME}" in workflow

    # Installed into a directory of its own, not into the test environment: nothing to undo.
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--no-deps", "--no-build-isolation", "--no-index"]
    installed = subprocess.run([*pip, "--target", str(site), str(package)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}

    checked = subprocess.run(
        [sys.executable, "-m", "recommenders", "check", NAME, "--world", str(small_world_dir), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "checks passed" in checked.stdout
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout


def test_the_example_plugins_workflow_is_the_scaffolds() -> None:
    # The example documents the CI gate; it must stay what `recommenders new` writes for its name.
    from recommenders.scaffold import WORKFLOW, _fill, names_of

    example = Path(__file__).resolve().parents[2] / "examples" / "botify-plugin-example" / ".github" / "workflows" / "ci.yml"
    assert example.read_text() == _fill(WORKFLOW, names_of("recent_artist_mix"))
