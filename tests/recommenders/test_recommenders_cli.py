"""The `recommenders` command: list and check, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from recommenders import registry
from recommenders.base import Recommendation, Recommender, Request
from recommenders.cli import main


class AlwaysTheSame(Recommender):
    """Breaks the contract: repeats the track just played."""

    name = "always_the_same"

    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(request.track, 1.0)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_list_shows_origin_and_artifact_needs(runner: CliRunner) -> None:
    result = runner.invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[1:]}
    assert lines["random"][1:4] == ["builtin", "none", "ok"]
    assert lines["top_pop"][1:4] == ["builtin", "optional", "ok"]
    assert lines["i2i"][1:4] == ["builtin", "required", "ok"]
    assert result.output.splitlines()[0].split() == ["NAME", "ORIGIN", "ARTIFACT", "STATUS", "TARGET"]


def test_list_json_marks_unloadable_entries_and_exits_1(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_extra", {"ghost": "no_such_package.model:Ghost"})
    result = runner.invoke(main, ["list", "--format", "json"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == "Error: 1 registered recommender(s) cannot be loaded: ghost"
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["ghost"]["origin"] == "runtime" and rows["ghost"]["artifact"] == "-"
    assert rows["ghost"]["status"] == "unavailable: No module named 'no_such_package'"
    assert rows["sticky_artist"]["status"] == "ok"


def test_check_runs_the_contract_kit(runner: CliRunner, small_world_dir: Path) -> None:
    result = runner.invoke(main, ["check", "sticky_artist", "--world", str(small_world_dir), "--param", "fallback=top_pop", "--requests", "50"])
    assert result.exit_code == 0, result.output
    assert "sticky_artist: 13 checks passed over 50 requests" in result.output
    assert "  ok  batch agrees with single" in result.output


def test_check_fits_a_trainable_on_a_synthetic_log(runner: CliRunner, small_world_dir: Path) -> None:
    result = runner.invoke(main, ["check", "i2i", "--world", str(small_world_dir), "--requests", "50"])
    assert result.exit_code == 0, result.output
    assert "  ok  save / load round trip" in result.output


def test_check_reports_a_broken_rule(runner: CliRunner, small_world_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_extra", {"same": f"{__name__}:AlwaysTheSame"})
    result = runner.invoke(main, ["check", "same", "--world", str(small_world_dir), "--requests", "20"])
    assert result.exit_code == 1
    assert "Error: recommender 'always_the_same' fails 'no repeats when avoidable'" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "sticky_artsit"], "no recommender named 'sticky_artsit'. Did you mean 'sticky_artist'?"),
        (["check", "random", "--param", "sed=1"], "cannot build 'random'"),
        (["check", "random", "--param", "seed"], "'seed' must look like key=value"),
        (["check", "top_pop", "--param", "k=0"], "k == 0, must be >= 1"),
    ],
)
def test_check_bad_input(runner: CliRunner, small_world_dir: Path, args: list[str], message: str) -> None:
    result = runner.invoke(main, [*args, "--world", str(small_world_dir)])
    assert result.exit_code != 0
    assert message in result.output


def test_check_needs_a_world(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["check", "random", "--world", str(tmp_path)])
    assert result.exit_code == 1 and "is not a world directory" in result.output
