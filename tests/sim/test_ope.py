"""`python -m sim.ope`: a candidate replayed on logged requests, and the command's messages."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from contracts.catalog import Catalog
from contracts.columns import Columns
from recommenders.base import Recommendation, Recommender, Request
from sim.ope import evaluate, main


class Always(Recommender):
    """Answers track 5 whatever the request, deterministically."""

    name = "always"

    def _recommend(self, request: Request) -> Recommendation:
        return Recommendation(5, 1.0)


def logged_events() -> pd.DataFrame:
    """Two listeners' sessions as `session_events` returns them: (user, session, track, time, recommendation, propensity)."""
    rows = [
        (1, 10, 0, 1.0, 5, 0.5), (1, 10, 5, 0.8, 7, 0.5), (1, 10, 7, 0.4, None, None),
        (2, 20, 3, 1.0, 9, 0.25), (2, 20, 9, 0.6, 5, 0.2), (2, 20, 5, 1.0, None, None),
    ]
    frame = pd.DataFrame(rows, columns=[Columns.USER, Columns.SESSION, Columns.TRACK, Columns.TIME, Columns.RECOMMENDATION, Columns.PROPENSITY])
    frame[Columns.TS] = pd.Timestamp("2026-01-01") + pd.to_timedelta(range(len(rows)), unit="min")
    frame[Columns.MESSAGE] = ["next", "next", "last"] * 2
    frame["step"] = [0, 1, 2] * 2
    frame["reward"] = frame.groupby(Columns.SESSION)[Columns.TIME].shift(-1)
    frame["next_track"] = frame.groupby(Columns.SESSION)[Columns.TRACK].shift(-1)
    frame["decision"] = frame[Columns.RECOMMENDATION].notna()
    frame[Columns.RECOMMENDER] = "logging"
    return frame


def test_the_candidate_is_replayed_on_the_logged_decisions(small_world_dir: Path) -> None:
    catalog = Catalog(small_world_dir)

    report = evaluate(logged_events(), catalog, Always(catalog), "always")

    ips = next(r for r in report.decisions if r.estimator == "ips")
    # Decisions: (rec 5, p .5, r .8), (rec 7, p .5, r .4), (rec 9, p .25, r .6), (rec 5, p .2, r 1.0);
    # the candidate serves 5: weights 2, 0, 0, 5.
    assert ips.value == pytest.approx((2 * 0.8 + 5 * 1.0) / 4)
    assert report.agreement == pytest.approx(0.5)
    assert report.logging_decision == pytest.approx((0.8 + 0.4 + 0.6 + 1.0) / 4)
    pdis = next(r for r in report.sessions if r.estimator == "pdis")
    # Session 10: 1.0 + 2 * 0.8 (then weight 0); session 20: 1.0 + 0 (the first weight is 0 already).
    assert pdis.value == pytest.approx((2.6 + 1.0) / 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--artifact", "dssm"], "must look like NAME=DIR"),
        ([], "missing.duckdb does not exist"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, small_world_dir: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["--log", str(tmp_path / "missing.duckdb"), "--world", str(small_world_dir), "--recommender", "dssm", *args])

    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
