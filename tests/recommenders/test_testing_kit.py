"""The contract kit catches each kind of broken recommender, and its data helpers hold their promises."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from contracts.catalog import Catalog
from contracts.columns import Columns
from recommenders.base import Recommendation, Recommender, Request, Trainable
from recommenders.testing import ContractError, check_recommender, make_events, make_requests, write_catalog


def allowed(catalog: Catalog, request: Request) -> list[int]:
    """Released tracks not played in the session, ascending."""
    played = {*request.history, request.track}
    day = max(request.day, 0) if request.day is not None else 10**9
    return [t for t in range(catalog.n_tracks) if t not in played and catalog.release_day[t] <= day]


class FirstUnplayed(Recommender):
    """A correct minimal plugin: the lowest released track id not played in the session."""

    name = "first_unplayed"

    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(allowed(self.catalog, request)[0], 1.0)


class Repeats(FirstUnplayed):
    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(request.track, 1.0)


class OutOfCatalog(FirstUnplayed):
    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(self.catalog.n_tracks, 1.0)


class BadPropensity(FirstUnplayed):
    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(super()._recommend(request).track, 1.5)


class Unreleased(FirstUnplayed):
    def _recommend(self, request: Request) -> Recommendation:
        last = self.catalog.n_tracks - 1
        return Recommendation(last, 1.0) if last not in request.history else super()._recommend(request)


_counter = itertools.count()


class Drifts(FirstUnplayed):
    """Hidden state: answers change from call to call."""

    def _recommend(self, request: Request) -> Recommendation:
        candidates = allowed(self.catalog, request)
        return Recommendation(candidates[next(_counter) % len(candidates)], 1.0)


class BatchDisagrees(FirstUnplayed):
    def _recommend_batch(self, requests: Any) -> list[Recommendation]:
        return list(reversed([self._recommend(r) for r in requests]))


class SwallowsParameters(FirstUnplayed):
    def __init__(self, catalog: Catalog, **params: Any) -> None:
        super().__init__(catalog)


class Slow(FirstUnplayed):
    def _recommend(self, request: Request) -> Recommendation:
        time.sleep(0.002)
        return super()._recommend(request)


class ForgetfulLoad(Trainable):
    """Fits an offset from the log, but `load` forgets it."""

    name = "forgetful"
    offset = 0

    def _fit(self, events: Any, **options: Any) -> None:
        self.offset = int(events[Columns.TRACK].max()) % 7 + 1

    def _save(self, directory: Path) -> None:
        (directory / "offset.txt").write_text(str(self.offset))

    def _load(self, directory: Path) -> None:
        pass

    def _recommend(self, request: Request) -> Recommendation:
        candidates = allowed(self.catalog, request)
        return Recommendation(candidates[self.offset % len(candidates)], 1.0)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    artists = [i // 3 for i in range(30)]
    return Catalog(write_catalog(tmp_path_factory.mktemp("kit") / "w", artist=artists, release_day=[0] * 27 + [1, 1, 2]))


def test_a_correct_plugin_passes(catalog: Catalog) -> None:
    report = check_recommender(lambda: FirstUnplayed(catalog), catalog)
    assert "no repeats when avoidable" in report.checks and "get_params round trip" in report.checks
    assert 0 < report.median_latency_s < 0.01 and report.requests == 200
    assert "first_unplayed: 13 checks passed over 200 requests" in str(report)


@pytest.mark.parametrize(
    ("cls", "check"),
    [
        (Repeats, "no repeats when avoidable"),
        (OutOfCatalog, "valid track ids"),
        (BadPropensity, "propensity in (0, 1]"),
        (Unreleased, "released tracks only"),
        (Drifts, "same answers when asked again"),
        (BatchDisagrees, "batch agrees with single"),
        (SwallowsParameters, "unknown parameters raise TypeError"),
    ],
)
def test_a_broken_plugin_is_caught(catalog: Catalog, cls: type[Recommender], check: str) -> None:
    with pytest.raises(ContractError, match=f"fails '{check.replace('(', '[(]').replace(')', '[)]')}'"):
        check_recommender(lambda: cls(catalog), catalog)


def test_latency_budget(catalog: Catalog) -> None:
    with pytest.raises(ContractError, match=r"latency budget.*budget 1\.00 ms"):
        check_recommender(lambda: Slow(catalog), catalog, requests=make_requests(catalog, 8), latency_budget=0.001)


def test_a_trainable_that_loses_its_state_is_caught(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="save / load round trip"):
        check_recommender(lambda: ForgetfulLoad(catalog), catalog, tmp_dir=tmp_path)
    assert (tmp_path / "forgetful-artifact" / "offset.txt").is_file()


def test_make_requests_are_sessions(catalog: Catalog) -> None:
    requests = make_requests(catalog, 100, seed=4)
    assert requests == make_requests(catalog, 100, seed=4)
    for request in requests:
        assert request.history[-1] == request.track and len(set(request.history)) == len(request.history)
        assert len(request.times) == len(request.history) and request.time == request.times[-1]
        assert all(catalog.release_day[t] == 0 for t in request.history)
    assert {r.day for r in requests} == {None, 0, 1, 2}
    assert sum(len(r.history) == 1 and r.time == 1.0 for r in requests) >= 25


def test_make_events_has_the_log_columns(catalog: Catalog) -> None:
    events = make_events(catalog, users=4, sessions_per_user=2, session_length=5)
    assert list(events.columns) == list(Columns.ALL) and len(events) == 40
    last = events[events[Columns.MESSAGE] == "last"]
    assert len(last) == 8 and last[Columns.RECOMMENDATION].isna().all()
    assert events[Columns.TS].is_monotonic_increasing and events[Columns.TIME].between(0, 1).all()


def test_write_catalog_checks_its_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must use every artist id"):
        write_catalog(tmp_path / "a", artist=[0, 2])
    with pytest.raises(ValueError, match="one entry per track"):
        write_catalog(tmp_path / "b", artist=[0, 1], popularity=[1.0])
    catalog = Catalog(write_catalog(tmp_path / "c", artist=[0, 1, 1], tags=[[1], [], [0, 2]], n_tags=3))
    assert catalog.tags(2).tolist() == [0, 2] and catalog.popularity.tolist() == pytest.approx([0.5, 1 / 3, 1 / 6])
    assert isinstance(pd.Series(catalog.title).iloc[0], str)
