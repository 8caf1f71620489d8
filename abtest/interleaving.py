"""Interleaving's verdict: which of two teams' tracks listeners listened to more.

An interleaving treatment (`interleave:` in the experiments file; docs/ope.md) serves, per
request, the top of the team-drafted list of two recommenders and logs the drafting team as the
event's `recommender`; a request on which both teams answered the same track (propensity 1) is
a tie and carries no preference. Each decision's credit is its reward, the listen fraction of
the served track (`abtest.decisions`).

Per listener u, with C_A and C_B the summed credit of the two teams' tracks, the preference is
(C_A - C_B) / (C_A + C_B), in [-1, 1] (the per-user "win" statistic of Chapelle, Joachims,
Radlinski and Yue 2012, https://doi.org/10.1145/2094072.2094078, with listen fractions as
graded clicks); the verdict averages it over listeners with a t interval, so the unit of
inference is the listener, as in the A/B test. The difference of the two teams' mean listen
fractions is reported beside it, with the delta method's interval clustered by listener (Deng,
Knoblich and Lu 2018, "Applying the delta method in metric analytics", KDD,
https://doi.org/10.1145/3219819.3219919: each value's deviation from its own team's mean, so a
listener whose values all belong to one team adds only their spread, not their level), in one
of two weightings: per decision (default: every decision weighs the same, as in the truth's mean
listen fraction per decision, so listeners with long sessions weigh more) or per listener (each
listener's mean listen fraction of each team's tracks, averaged over listeners: the A/B's own
per-user metric). On the scenario of `scripts/ope_vs_truth.py` the per-decision weighting agrees
with the truth more often (docs/ope.md).

A log interleaved per session (`interleave_unit: session`: one team serves a whole session) is
read with `unit="session"`: every decision of a session is its team's, ties included (they are
part of what the team's session earned), the difference compares the two teams' sessions as the
A/B compares its arms, and the per-listener preference pairs, within each listener who had
sessions of both teams, the two teams' mean listen fractions M_A and M_B: (M_A - M_B) / (M_A + M_B).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.special

from abtest.config import resolve
from abtest.decisions import DecisionColumns
from abtest.errors import AbtestError
from abtest.ope import clustered_mean
from contracts.columns import Columns

UNITS = ("request", "session")
WEIGHTS = ("decision", "listener")


class Preference(NamedTuple):
    """Interleaving's result for team A against team B.

    Attributes:
        team_a, team_b: the two recommenders' names.
        preference: mean over listeners of (C_A - C_B) / (C_A + C_B); > 0 favours A.
        lower, upper: its (1 - alpha) t interval over listeners.
        p_value: two-sided p-value of "no preference" (one-sample t-test over listeners).
        difference: mean listen fraction of A's tracks minus B's (per listener or per decision).
        difference_lower, difference_upper: its interval, clustered by listener.
        listeners: listeners in the per-listener preference.
        decisions: decisions counted.
        ties: decisions on which both teams served the same track (left out per request, counted per session).
        preference_sd: the per-listener preference's standard deviation over listeners.
        difference_se: the difference's standard error, clustered by listener.
        difference_listeners: listeners (clusters) in the difference.
        unit: "request" or "session", how the log was interleaved.
    """

    team_a: str
    team_b: str
    preference: float
    lower: float
    upper: float
    p_value: float
    difference: float
    difference_lower: float
    difference_upper: float
    listeners: int
    decisions: int
    ties: int
    preference_sd: float
    difference_se: float
    difference_listeners: int
    unit: str

    def _name(self, lower: float, upper: float) -> str:
        """The team an interval prefers (A above 0, B below), or 'tie' when it covers 0."""
        return self.team_a if lower > 0 else self.team_b if upper < 0 else "tie"

    @property
    def verdict(self) -> str:
        """'A' or 'B' when the interval excludes 0 (the name of the preferred team), else 'tie'."""
        return self._name(self.lower, self.upper)

    @property
    def difference_verdict(self) -> str:
        """The same verdict from the decision-level difference's interval."""
        return self._name(self.difference_lower, self.difference_upper)

    def listeners_needed(self, alpha: float | None = None, power: float | None = None) -> float:
        """Listeners the decision-level difference needs for `power` at a two-sided level `alpha`,
        at the difference it measured: G (z_{1-alpha/2} + z_power)^2 se^2 / d^2, with se the clustered
        standard error over G listeners (se^2 shrinks as 1 / G). The A/B's counterpart, both arms
        together, is 4 (z_{1-alpha/2} + z_power)^2 s^2 / d^2 with s the per-listener standard deviation."""
        alpha, power = resolve("alpha", alpha), resolve("power", power)
        if self.difference == 0:
            return math.inf
        z = float(scipy.special.ndtri(1.0 - alpha / 2.0) + scipy.special.ndtri(power))
        return self.difference_listeners * z**2 * self.difference_se**2 / self.difference**2


def preference(
    events: pd.DataFrame, team_a: str, team_b: str, alpha: float | None = None, unit: str = "request", weight: str = "decision"
) -> Preference:
    """The interleaving verdict of team `team_a` against `team_b` from `abtest.decisions.session_events`,
    for a log interleaved per request (`unit="request"`) or per session (`unit="session"`), with the
    difference weighted per decision (`weight="decision"`) or per listener (`weight="listener"`)."""
    alpha = resolve("alpha", alpha)
    if unit not in UNITS:
        raise AbtestError(f"unit == {unit!r}, must be one of {', '.join(UNITS)}")
    if weight not in WEIGHTS:
        raise AbtestError(f"weight == {weight!r}, must be one of {', '.join(WEIGHTS)}")
    decisions = events[events[DecisionColumns.DECISION] & events[Columns.RECOMMENDER].isin([team_a, team_b])]
    ties = decisions[Columns.PROPENSITY].fillna(0.0) >= 1.0
    drafted = decisions if unit == "session" else decisions[~ties]
    if drafted.empty:
        raise AbtestError(f"no interleaved decisions between {team_a!r} and {team_b!r}: is an interleave treatment in the log?")
    if unit == "session":
        teams_per_session = drafted.groupby([Columns.USER, Columns.SESSION])[Columns.RECOMMENDER].nunique()
        if (teams_per_session > 1).any():
            raise AbtestError(f"{int((teams_per_session > 1).sum())} sessions mix both teams: the log was interleaved per request; use unit='request'")
    is_a = (drafted[Columns.RECOMMENDER] == team_a).to_numpy()
    reward = drafted[DecisionColumns.REWARD].to_numpy(dtype=np.float64)
    users = drafted[Columns.USER].to_numpy()
    _, index = np.unique(users, return_inverse=True)
    credit_a = np.bincount(index, weights=np.where(is_a, reward, 0.0))
    credit_b = np.bincount(index, weights=np.where(is_a, 0.0, reward))
    if unit == "session":  # each team's mean per decision, for listeners who had both teams' sessions
        count_a = np.bincount(index, weights=is_a.astype(np.float64))
        count_b = np.bincount(index, weights=(~is_a).astype(np.float64))
        both = (count_a > 0) & (count_b > 0)
        credit_a = np.where(both, credit_a / np.maximum(count_a, 1.0), 0.0)
        credit_b = np.where(both, credit_b / np.maximum(count_b, 1.0), 0.0)
    total = credit_a + credit_b
    keep = total > 0
    per_user = (credit_a[keep] - credit_b[keep]) / total[keep]
    n = len(per_user)
    if n < 2:
        raise AbtestError(f"interleaving needs at least 2 listeners with credit, got {n}")
    mean = float(per_user.mean())
    sd = float(per_user.std(ddof=1))
    se = sd / math.sqrt(n)
    t = float(scipy.special.stdtrit(n - 1, 1.0 - alpha / 2.0))
    p_value = float(2.0 * scipy.special.stdtr(n - 1, -abs(mean / se))) if se > 0 else (0.0 if mean != 0 else 1.0)
    if weight == "listener":  # one value per (listener, team): that listener's mean listen fraction of the team's tracks
        cells = pd.DataFrame({"user": users, "is_a": is_a, "reward": reward}).groupby(["user", "is_a"])["reward"].mean().reset_index()
        users, is_a, reward = cells["user"].to_numpy(), cells["is_a"].to_numpy(dtype=bool), cells["reward"].to_numpy(dtype=np.float64)
    difference, low, high, difference_se, groups = mean_difference(reward, is_a, users, alpha)
    return Preference(
        team_a, team_b, mean, mean - t * se, mean + t * se, p_value, difference, low, high, n, len(drafted), int(ties.sum()),
        sd, difference_se, groups, unit,
    )


def mean_difference(values: np.ndarray, is_a: np.ndarray, clusters: np.ndarray, alpha: float | None = None) -> tuple[float, float, float, float, int]:
    """(difference, lower, upper, se, clusters): mean of `values[is_a]` minus mean of the rest, with
    the delta method's interval clustered by `clusters` (Deng, Knoblich and Lu 2018): each value's
    deviation from its own group's mean, over its group's share, summed per cluster, since the
    groups' sizes are random. 0 with a zero interval when either group is empty."""
    values = np.asarray(values, dtype=np.float64)
    is_a = np.asarray(is_a, dtype=bool)
    share_a = is_a.mean()
    if 0 < share_a < 1:
        mean_a, mean_b = values[is_a].mean(), values[~is_a].mean()
        difference = float(mean_a - mean_b)
        terms = np.where(is_a, (values - mean_a) / share_a, -(values - mean_b) / (1.0 - share_a))
    else:
        difference, terms = 0.0, np.zeros_like(values)
    centre, low, high, se, groups = clustered_mean(terms, clusters, alpha)
    return difference, difference + (low - centre), difference + (high - centre), se, groups
