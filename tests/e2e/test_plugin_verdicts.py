"""One verdict everywhere: each mistake a plugin can make gets the same rule from `recommenders check`,
from the service, and from a local run; behind a fallback, a failing plugin's requests are answered and
logged as error events that `abtest report` turns into an error-rate row."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from abtest.cli import main as abtest_main
from botify.experiments import build_experiments, experiments_from_mapping
from botify.history import MemoryHistory
from botify.service import ServeError, Service
from botify.validation import Item
from contracts.catalog import Catalog
from contracts.config import ConfigError
from contracts.eventlog import EventWriter, init_log, open_log
from contracts.eventlog.writer import record_start
from recommenders import registry
from recommenders.base import Recommendation, Recommender, Request
from recommenders.cli import main as recommenders_main
from recommenders.testing import write_catalog
from sim.run.clients import LocalClient, ServiceError

BUDGET_MS = 10.0


class _Base(Recommender):
    """The first released track not played in the session, as a correct plugin answers."""

    name = "first_unplayed"

    def _first(self, request: Request) -> int:
        played = {*request.history, request.track}
        return next(t for t in range(self.catalog.n_tracks) if t not in played)

    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(self._first(request), 1.0)


class FloatTrack(_Base):
    name = "float_track"

    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(float(self._first(request)), 1.0)  # type: ignore[arg-type]


class NumpyTypes(_Base):
    name = "numpy_types"

    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(np.int64(self._first(request)), np.float32(1.0))  # type: ignore[arg-type]


class OutOfRange(_Base):
    name = "out_of_range"

    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(self.catalog.n_tracks, 1.0)


class Raises(_Base):
    name = "raises"

    def _recommend(self, request: Request) -> Recommendation:
        raise KeyError("no such user")


class Slow(_Base):
    name = "slow"

    def _recommend(self, request: Request) -> Recommendation:
        time.sleep(3 * BUDGET_MS / 1e3)
        return super()._recommend(request)


PLUGINS = {cls.name: f"{__name__}:{cls.__name__}" for cls in (_Base, FloatTrack, NumpyTypes, OutOfRange, Raises, Slow)}
PLUGINS["misspelled"] = f"{__name__}:NoSuchClass"

# mistake -> the rule every path must name (None: accepted everywhere)
VERDICTS = {
    "float_track": "answers are Recommendations",
    "numpy_types": None,
    "out_of_range": "valid track ids",
    "raises": "answers without raising",
    "slow": "latency budget",
    "misspelled": "cannot be loaded",
}


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "_extra", dict(PLUGINS))
    yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("verdicts") / "world", artist=[i // 4 for i in range(40)])


def items(n: int = 6) -> list[Item]:
    """One session's `next` requests of one user (the tracks 20, 21, ...)."""
    return [Item("next", 7, 20 + i, 0.5, 1, 1_767_225_600_000 + 1000 * i) for i in range(n)]


def verdict_of_check(world: Path, name: str) -> str:
    result = CliRunner().invoke(recommenders_main, ["check", name, "--world", str(world), "--quick", "--budget-ms", str(BUDGET_MS)])
    return "ok" if result.exit_code == 0 else result.output.strip().splitlines()[-1]


def served_rules(service: Service, writer: EventWriter) -> tuple[list[int | None | ServeError], list[str | None]]:
    answers = service.serve(items())
    segment = writer.flush()
    assert segment is not None
    with open_log(segment) as con:
        messages = [row[0] for row in con.execute("SELECT error_message FROM events").fetchall()]
    return answers, messages


def experiments_file(name: str, fallback: str | None = None) -> dict:
    treatment: dict[str, object] = {"recommender": name, "latency_budget_ms": BUDGET_MS}
    if fallback is not None:
        treatment["fallback"] = fallback
    return {"experiments": [{"name": "e", "serving": True, "treatments": [dict(treatment), dict(treatment)]}]}


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_each_mistake_gets_one_verdict_from_check_service_and_local_run(world: Path, tmp_path: Path, name: str) -> None:
    rule = VERDICTS[name]
    catalog = Catalog(world)
    check = verdict_of_check(world, name)
    if name == "misspelled":
        with pytest.raises(ConfigError) as at_start:
            build_experiments(experiments_from_mapping(experiments_file(name)), catalog)
        with pytest.raises(registry.RegistryError) as local:
            LocalClient(name, catalog, day_zero=dt.date(2025, 12, 31))
        assert rule in check and rule in str(at_start.value) and rule in str(local.value)
        return
    layout = init_log(tmp_path / "events.duckdb")
    experiments = build_experiments(experiments_from_mapping(experiments_file(name)), catalog)
    writer = EventWriter(layout, experiments.names)
    answers, messages = served_rules(Service(catalog, experiments, MemoryHistory(), writer), writer)
    init_log(tmp_path / "local.duckdb")
    local = LocalClient(name, catalog, day_zero=dt.date(2025, 12, 31), latency_budget=BUDGET_MS / 1e3, log=tmp_path / "local.duckdb")
    try:
        local_answers: list[int | None] | ServiceError = local.serve(items())
    except ServiceError as error:
        local_answers = error
    finally:
        local.close()
    with open_log(tmp_path / "local.duckdb") as con:
        local_messages = [row[0] for row in con.execute("SELECT error_message FROM events").fetchall()]
    if rule is None:
        assert check == "ok"
        assert all(isinstance(a, int) for a in answers) and messages == [None] * len(answers)
        assert local_answers == answers and local_messages == messages
        return
    said = f"recommender {name!r} fails '{rule}'"
    assert said in check
    assert all(message is not None and message.startswith(said) for message in messages)
    assert all(message is not None and message.startswith(said) for message in local_messages)
    if rule == "latency budget":  # slow answers are served, and counted
        assert all(isinstance(a, int) for a in answers) and isinstance(local_answers, list)
    else:  # no fallback: every item fails, the run stops with a line naming the plugin and the rule
        assert all(isinstance(a, ServeError) and said in str(a) for a in answers)
        assert isinstance(local_answers, ServiceError) and said in str(local_answers)


def test_behind_a_fallback_a_failing_plugin_is_answered_logged_and_reported(world: Path, tmp_path: Path) -> None:
    catalog = Catalog(world)
    config = experiments_from_mapping(
        {"experiments": [{"name": "e", "serving": True, "treatments": [{"recommender": "first_unplayed"}, {"recommender": "raises", "fallback": "random"}]}]}
    )
    experiments = build_experiments(config, catalog)
    log = tmp_path / "events.duckdb"
    layout = init_log(log)
    record_start(layout, [{"experiment": "e", "treatment": i, "recommender": r, "serving": True} for i, r in enumerate(["first_unplayed", "raises"])], 1)
    writer = EventWriter(layout, experiments.names)
    service = Service(catalog, experiments, MemoryHistory(), writer)
    users = range(60)
    batch = [Item("next", u, 20 + s, 0.5, u + 1, 1_767_225_600_000 + 1000 * s) for s in range(4) for u in users]
    batch += [Item("last", u, 30, 0.5, u + 1, 1_767_225_600_000 + 5000) for u in users]

    answers = service.serve(batch)
    writer.close()

    assert all(isinstance(a, int) for a, item in zip(answers, batch) if item.message == "next")
    with open_log(log) as con:
        rows = con.execute("SELECT recommender, error, count(*) FROM events WHERE message = 'next' GROUP BY ALL ORDER BY ALL").fetchall()
    treated = sum(1 for u in users if experiments.assignments(u)[0] == 1) * 4
    assert rows == [("first_unplayed", None, 240 - treated), ("random", "exception", treated)]
    result = CliRunner().invoke(abtest_main, ["report", "--log", str(log), "--format", "json"])
    assert result.exit_code == 0, result.output
    error_rate = {row["metric"]: row for row in json.loads(result.stdout)}["error_rate"]
    assert (error_rate["control_mean"], error_rate["treatment_mean"]) == (0.0, 1.0)
