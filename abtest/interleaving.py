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
inference is the listener, as in the A/B test. The decision-level difference of mean listen
fractions, with an interval clustered by listener, is reported beside it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.special

from abtest.config import resolve
from abtest.decisions import DecisionColumns
from abtest.errors import AbtestError
from abtest.ope import clustered_mean
from contracts.columns import Columns


class Preference(NamedTuple):
    """Interleaving's result for team A against team B.

    Attributes:
        team_a, team_b: the two recommenders' names.
        preference: mean over listeners of (C_A - C_B) / (C_A + C_B); > 0 favours A.
        lower, upper: its (1 - alpha) t interval over listeners.
        p_value: two-sided p-value of "no preference" (one-sample t-test over listeners).
        difference: mean listen fraction of A's tracks minus B's, over decisions.
        difference_lower, difference_upper: its interval, clustered by listener.
        listeners: listeners with credit for either team.
        decisions: non-tied decisions counted.
        ties: decisions on which both teams served the same track (left out).
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

    @property
    def verdict(self) -> str:
        """'A' or 'B' when the interval excludes 0 (the name of the preferred team), else 'tie'."""
        if self.lower > 0:
            return self.team_a
        if self.upper < 0:
            return self.team_b
        return "tie"

    @property
    def difference_verdict(self) -> str:
        """The same verdict from the decision-level difference's interval."""
        if self.difference_lower > 0:
            return self.team_a
        if self.difference_upper < 0:
            return self.team_b
        return "tie"


def preference(events: pd.DataFrame, team_a: str, team_b: str, alpha: float | None = None) -> Preference:
    """The interleaving verdict of team `team_a` against `team_b` from `abtest.decisions.session_events`."""
    alpha = resolve("alpha", alpha)
    decisions = events[events[DecisionColumns.DECISION] & events[Columns.RECOMMENDER].isin([team_a, team_b])]
    ties = decisions[Columns.PROPENSITY].fillna(0.0) >= 1.0
    drafted = decisions[~ties]
    if drafted.empty:
        raise AbtestError(f"no interleaved decisions between {team_a!r} and {team_b!r}: is an interleave treatment in the log?")
    is_a = (drafted[Columns.RECOMMENDER] == team_a).to_numpy()
    reward = drafted[DecisionColumns.REWARD].to_numpy(dtype=np.float64)
    users = drafted[Columns.USER].to_numpy()
    _, index = np.unique(users, return_inverse=True)
    credit_a = np.bincount(index, weights=np.where(is_a, reward, 0.0))
    credit_b = np.bincount(index, weights=np.where(is_a, 0.0, reward))
    total = credit_a + credit_b
    keep = total > 0
    per_user = (credit_a[keep] - credit_b[keep]) / total[keep]
    n = len(per_user)
    if n < 2:
        raise AbtestError(f"interleaving needs at least 2 listeners with credit, got {n}")
    mean = float(per_user.mean())
    se = float(per_user.std(ddof=1) / np.sqrt(n))
    t = float(scipy.special.stdtrit(n - 1, 1.0 - alpha / 2.0))
    p_value = float(2.0 * scipy.special.stdtr(n - 1, -abs(mean / se))) if se > 0 else (0.0 if mean != 0 else 1.0)
    # Decision-level difference: +r for A's decisions, -r for B's, each scaled by the share of its team.
    share_a = is_a.mean()
    terms = np.where(is_a, reward / share_a, -reward / (1.0 - share_a)) if 0 < share_a < 1 else np.zeros_like(reward)
    difference, low, high, _, _ = clustered_mean(terms, users, alpha)
    return Preference(
        team_a, team_b, mean, mean - t * se, mean + t * se, p_value, difference, low, high, n, len(drafted), int(ties.sum())
    )
