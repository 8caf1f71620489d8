"""Interleaving's per-listener preference on hand-made decisions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abtest.decisions import DecisionColumns, session_events
from abtest.errors import AbtestError
from abtest.interleaving import preference
from abtest.log import EventLog
from contracts.columns import Columns
from tests.abtest.conftest import event


def decisions(rows: list[tuple[int, str, float, float]]) -> pd.DataFrame:
    """(user, team, reward, propensity) per decision, as `session_events` returns them."""
    return pd.DataFrame(
        {
            Columns.USER: [r[0] for r in rows],
            Columns.RECOMMENDER: [r[1] for r in rows],
            DecisionColumns.REWARD: [r[2] for r in rows],
            Columns.PROPENSITY: [r[3] for r in rows],
            DecisionColumns.DECISION: True,
        }
    )


def test_preference_averages_each_listeners_share_of_credit() -> None:
    events = decisions([
        (1, "a", 0.9, 0.5), (1, "b", 0.3, 0.5),  # (0.9 - 0.3) / 1.2 = 0.5
        (2, "a", 0.2, 0.5), (2, "b", 0.2, 0.5), (2, "a", 0.6, 1.0),  # a tie (propensity 1) is left out: 0
        (3, "a", 1.0, 0.5),  # 1
    ])

    result = preference(events, "a", "b")

    per_user = np.array([0.5, 0.0, 1.0])
    assert result.preference == pytest.approx(per_user.mean())
    half_width = 4.302653 * per_user.std(ddof=1) / np.sqrt(3)  # t(2) quantile at 0.975
    assert (result.lower, result.upper) == pytest.approx((per_user.mean() - half_width, per_user.mean() + half_width), rel=1e-5)
    assert (result.listeners, result.decisions, result.ties) == (3, 5, 1)
    # Per decision: a's rewards (0.9, 0.2, 1.0) against b's (0.3, 0.2); per listener the same here.
    assert result.difference == pytest.approx(0.7 - 0.25)
    assert result.verdict == "tie"


def test_a_consistent_preference_gives_the_verdict() -> None:
    rows = [(user, team, 0.8 if team == "b" else 0.3, 0.5) for user in range(40) for team in ("a", "b")]

    result = preference(decisions(rows), "a", "b")

    assert result.verdict == "b" and result.upper < 0
    assert result.difference == pytest.approx(0.3 - 0.8)
    assert result.difference_verdict == "b" and result.difference_upper < 0


def session_decisions(rows: list[tuple[int, int, str, float, float]]) -> pd.DataFrame:
    """(user, session, team, reward, propensity) per decision, as `session_events` returns them."""
    frame = decisions([(user, team, reward, propensity) for user, _, team, reward, propensity in rows])
    frame[Columns.SESSION] = [r[1] for r in rows]
    return frame


def test_per_session_every_decision_counts_for_its_sessions_team() -> None:
    events = session_decisions([
        (1, 10, "a", 0.9, 0.5), (1, 10, "a", 0.5, 1.0), (1, 11, "b", 0.3, 0.5),  # M_A 0.7, M_B 0.3: 0.4 / 1.0
        (2, 20, "a", 0.2, 0.5), (2, 21, "b", 0.6, 0.5), (2, 21, "b", 0.2, 0.5), (2, 22, "b", 0.1, 0.5),  # M_A 0.2, M_B 0.3: -0.1 / 0.5
        (3, 30, "a", 1.0, 0.5),  # only team a's sessions: in the difference, not in the paired preference
    ])

    result = preference(events, "a", "b", unit="session")

    assert result.preference == pytest.approx((0.4 - 0.2) / 2)
    # Per decision: a's decisions (0.9, 0.5, 0.2, 1.0), the tie included, against b's (0.3, 0.6, 0.2, 0.1).
    assert result.difference == pytest.approx(0.65 - 0.3)
    assert (result.listeners, result.difference_listeners, result.decisions, result.ties) == (2, 3, 8, 1)
    # Per listener: a's listener means (0.7, 0.2, 1.0) against b's (0.3, 0.3).
    assert preference(events, "a", "b", unit="session", weight="listener").difference == pytest.approx(1.9 / 3 - 0.3)
    # Per request the tie is left out and listener 3 counts: credit shares 0.6 / 1.2, -0.7 / 1.1 and 1.
    assert preference(events, "a", "b").preference == pytest.approx((0.5 - 0.7 / 1.1 + 1) / 3)


def test_the_differences_interval_is_the_delta_methods_clustered_by_listener() -> None:
    # Listener 1 had both teams' tracks, listener 2 only a's, listener 3 only b's.
    events = decisions([(1, "a", 0.9, 0.5), (1, "b", 0.3, 0.5), (2, "a", 0.5, 0.5), (3, "b", 0.1, 0.5)])

    result = preference(events, "a", "b")

    # mean(a) 0.7, mean(b) 0.2, each team half the values: deviations over 1/2 summed per listener are
    # 0.4 - 0.2, -0.4 and 0.2; variance (0.2^2 + 0.4^2 + 0.2^2) / 4^2 x 3 / 2 = 0.0225.
    assert result.difference == pytest.approx(0.5)
    assert result.difference_se == pytest.approx(0.15)
    assert (result.difference_lower, result.difference_upper) == pytest.approx((0.5 - 1.959964 * 0.15, 0.5 + 1.959964 * 0.15), rel=1e-6)


def test_a_session_with_both_teams_is_an_error_per_session() -> None:
    events = session_decisions([(1, 10, "a", 0.9, 0.5), (1, 10, "b", 0.3, 0.5), (2, 20, "a", 0.4, 0.5)])

    with pytest.raises(AbtestError, match="1 sessions mix both teams.*unit='request'"):
        preference(events, "a", "b", unit="session")


@pytest.mark.parametrize(
    ("options", "message"),
    [({"unit": "day"}, "unit == 'day', must be one of request, session"), ({"weight": "session"}, "weight == 'session', must be one of decision, listener")],
)
def test_an_unknown_option_is_an_error_naming_it(options: dict[str, str], message: str) -> None:
    with pytest.raises(AbtestError, match=message):
        preference(decisions([(1, "a", 0.5, 0.5)]), "a", "b", **options)


def test_listeners_needed_scales_the_clustered_variance_to_one_listener() -> None:
    result = preference(decisions([(user, team, 0.8 if team == "b" else 0.3, 0.5) for user in range(40) for team in ("a", "b")]), "a", "b")
    measured = result._replace(difference=0.1, difference_se=0.02, difference_listeners=100)

    # 100 listeners x (1.959964 + 0.841621)^2 x 0.02^2 / 0.1^2
    assert measured.listeners_needed() == pytest.approx(100 * (1.959964 + 0.841621) ** 2 * 0.0004 / 0.01, rel=1e-6)
    assert measured._replace(difference=0.0).listeners_needed() == float("inf")


def test_no_interleaved_decisions_is_an_error() -> None:
    with pytest.raises(AbtestError, match="no interleaved decisions"):
        preference(decisions([(1, "c", 0.5, 0.5)]), "a", "b")



def test_events_sharing_a_timestamp_are_put_in_chain_order(make_log: Callable[..., Path]) -> None:
    # Skips take no simulated time: 9 -> 3 -> 4 share a minute; sorted by track they would read 3, 9.
    rows = [
        {**event(1, 0.0, session=5, time=1.0), Columns.TRACK: 1, Columns.RECOMMENDATION: 9},
        {**event(1, 1.0, session=5, time=0.0), Columns.TRACK: 3, Columns.RECOMMENDATION: 4},
        {**event(1, 1.0, session=5, time=0.0), Columns.TRACK: 9, Columns.RECOMMENDATION: 3},
        {**event(1, 1.0, "last", session=5, time=0.7), Columns.TRACK: 4, Columns.RECOMMENDATION: None},
    ]
    with EventLog.open(make_log(rows)) as log:
        events = session_events(log, "exp")

    assert events[Columns.TRACK].tolist() == [1, 9, 3, 4]
    assert events[DecisionColumns.REWARD].tolist()[:3] == [0.0, 0.0, 0.7]
    assert events[DecisionColumns.DECISION].tolist() == [True, True, True, False]


@pytest.mark.parametrize("unit", ["request", "session"])
def test_the_differences_interval_covers_a_zero_difference_at_its_level(unit: str) -> None:
    # Two equally good teams on seeded listeners with their own levels and uneven numbers of
    # sessions and steps: the 95% interval should hold 0 in about 95% of 200 replications.
    replications, covered = 200, 0
    for seed in range(replications):
        rng = np.random.default_rng(seed)
        rows = []
        for user in range(40):
            level = rng.normal(0.4, 0.15)
            for session in range(1 + rng.poisson(1.5)):
                session_team = rng.random() < 0.5
                for _ in range(1 + rng.poisson(5)):
                    team = session_team if unit == "session" else rng.random() < 0.5
                    rows.append((user, 10 * user + session, "a" if team else "b", float(np.clip(level + rng.normal(0, 0.25), 0, 1)), 0.5))
        result = preference(session_decisions(rows), "a", "b", unit=unit)
        covered += result.difference_lower <= 0 <= result.difference_upper
    sd = np.sqrt(0.95 * 0.05 * replications)  # binomial, 4.5 sd: a false alarm about once in 150,000 runs
    assert 0.95 * replications - 4.5 * sd <= covered <= 0.95 * replications + 4.5 * sd
