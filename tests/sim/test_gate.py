"""`python -m sim.gate`: exit 0 for a recommender as good as its baseline, 1 for a worse, failing or slow one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from contracts.catalog import Catalog
from contracts.eventlog import open_log
from recommenders import registry
from recommenders.base import Recommendation, Recommender, Request
from sim.gate import main

EPISODES = "300"  # arrivals: enough for random's drop against sticky_artist to be unmistakable


class SlowProbe(Recommender):
    """Answers track 0 after 20 ms: over any sensible latency budget."""

    name = "gate_slow"

    def _recommend(self, request: Request) -> Recommendation:
        time.sleep(0.02)
        return Recommendation(0, 1.0)


class UnbuildableProbe(Recommender):
    """Fails in its constructor with an exception the registry does not translate."""

    name = "gate_unbuildable"

    def __init__(self, catalog: Catalog) -> None:
        raise KeyError("no such column")

    def _recommend(self, request: Request) -> Recommendation:
        raise AssertionError("never built")


@pytest.fixture(autouse=True)
def probes() -> None:
    registry.register("gate_broken", "tests.botify.probe:Broken")
    registry.register("gate_slow", "tests.sim.test_gate:SlowProbe")
    registry.register("gate_unbuildable", "tests.sim.test_gate:UnbuildableProbe")


def gate(world: Path, *args: str) -> Result:
    # The latency budget is wall-clock: under a loaded machine the default 10 ms p99 can fail a
    # recommender that is not slow, so tests that are not about latency set it out of reach
    # (a test that gives its own --max-p99-ms overrides this one: the last value wins).
    return CliRunner().invoke(main, ["--max-p99-ms", "1000", *args, "--world", str(world), "--episodes", EPISODES])


def test_a_better_recommender_passes(small_world_dir: Path, tmp_path: Path) -> None:
    result = gate(small_world_dir, "sticky_artist", "--baseline", "random", "--keep-logs", str(tmp_path / "logs"))
    assert result.exit_code == 0, result.output
    assert "gate passed: sticky_artist against random" in result.output
    assert "FAIL" not in result.output
    assert (tmp_path / "logs" / "plugin.duckdb").exists() and (tmp_path / "logs" / "baseline.duckdb").exists()
    first = _events(tmp_path / "logs" / "plugin.duckdb")
    again = gate(small_world_dir, "sticky_artist", "--baseline", "random", "--keep-logs", str(tmp_path / "logs"))
    assert again.exit_code == 0, again.output
    assert _events(tmp_path / "logs" / "plugin.duckdb") == first > 0  # a kept log is replaced, not appended to


def _events(log: Path) -> int:
    with open_log(log) as connection:
        (count,) = connection.execute("SELECT count(*) FROM events").fetchone()
    return int(count)


def test_the_same_recommender_has_exactly_no_effect(small_world_dir: Path) -> None:
    result = gate(small_world_dir, "sticky_artist", "--baseline", "sticky_artist")
    assert result.exit_code == 0, result.output
    assert "+0.00% (95% CI +0.00% .. +0.00%)" in result.output  # same listeners, same answers: the pairs are equal


def test_a_worse_recommender_fails(small_world_dir: Path) -> None:
    result = gate(small_world_dir, "random", "--baseline", "sticky_artist")
    assert result.exit_code == 1
    assert any(line.startswith("FAIL") and line.split()[1] == "time" for line in result.output.splitlines())
    assert "gate failed for 'random' against 'sticky_artist': time" in result.output


def test_a_failing_recommender_fails_on_its_error_rate(small_world_dir: Path) -> None:
    # Its baseline answers every request for it, so the listeners see no difference: only the errors tell.
    result = gate(small_world_dir, "gate_broken")
    assert result.exit_code == 1
    assert "gate failed for 'gate_broken' against 'sticky_artist': error rate" in result.output
    assert "mean_time_per_session" not in result.output.splitlines()[-1]


def test_a_failing_recommender_passes_a_tolerant_error_budget(small_world_dir: Path) -> None:
    result = gate(small_world_dir, "gate_broken", "--max-error-rate", "1")
    assert result.exit_code == 0, result.output


def test_a_slow_recommender_fails_before_simulating(small_world_dir: Path) -> None:
    result = gate(small_world_dir, "gate_slow", "--max-p99-ms", "5")
    assert result.exit_code == 1
    assert "over the p99 budget of 5 ms; nothing simulated" in result.output
    assert "listeners" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stiky_artist"], "no recommender named 'stiky_artist'. Did you mean 'sticky_artist'?"),
        (["sticky_artist", "--param", "fallback=nothing"], "bad parameters: fallback == 'nothing'"),
        (["sticky_artist", "--param", "oops"], "must look like key=value"),
        (["gate_unbuildable"], "recommender 'gate_unbuildable' cannot be built: KeyError: 'no such column'"),
    ],
)
def test_bad_input_is_one_line(small_world_dir: Path, args: list[str], message: str) -> None:
    result = gate(small_world_dir, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_missing_world_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sticky_artist", "--world", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "is not a world directory" in result.output
