"""An experiment looked at day by day: cumulative estimates against a sequential boundary.

At the end of each day (midnight after it) the metric is analysed on every session that started
so far, exactly as `abtest report` would have analysed it then. The relative effect's
delta-method standard error gives z = effect / se, and the look may stop the experiment when
|z| crosses the day's boundary:

* 'obf' / 'pocock': Lan-DeMets group-sequential boundaries (`abtest.groupseq`) for one look a
  day, look k spending alpha(t_k). The information fraction t_k is measured: the variance of
  the arms' difference on the scale of sums, V_k = n_k^2 se_k^2 (n_k users, se_k the standard
  error of the difference of means), over that of the last look, the planned end. On that
  scale a listener's cumulative total only adds up, so increments are independent, as the
  boundaries assume; calendar fractions k/K would not be (listeners arrive and accumulate
  time, so information grows faster than days, and k/K spends too early: 7% false positives
  instead of 5% in `tests/abtest/test_abtest_validate.py`'s scenario). When the experiment is
  still running (`planned_days` beyond the log) or V_k does not grow (a per-session mean of a
  fixed set of listeners), the fractions fall back to k/K, and the result says so. The interval shown is the repeated confidence interval
  effect +- c_k se (Jennison & Turnbull 2000, ch. 9), which excludes 0 exactly when the look
  may stop.
* 'confidence-sequence': the asymptotic confidence sequence (`abtest.sequential`), tightest at
  the planned number of users; valid at any look, planned or not.

Either way the chance that some look stops an experiment without an effect is at most alpha;
reading the fixed-horizon interval every day is not (it is shown beside, as `naive_p`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.special import ndtr

from abtest import groupseq, sequential
from abtest.errors import AbtestError
from abtest.experiment import arm_data, check_arms
from abtest.log import EventLog
from abtest.metrics import MetricBaseAggregated
from abtest.sessionize import Filters

METHODS = ("obf", "pocock", "confidence-sequence")
INFORMATION = {"variance": "variance (n^2 se^2)", "days": "days (k/K)"}


@dataclass(frozen=True)
class Look:
    """One daily look.

    Attributes:
        day: Simulated day looked at (counted from `day_zero`, as `--days` counts).
        until: End of the look: sessions that started before it count.
        users: Users seen by then, both arms.
        control_mean: Metric value in the control arm so far.
        treatment_mean: Metric value in the treatment arm so far.
        effect: Relative effect so far (fraction).
        se: Delta-method standard error of the relative effect.
        z: effect / se.
        information: n^2 times the variance of the difference of the arms' means (see the module docstring).
        boundary: The |z| the look must reach to stop (inf: none is spent yet).
        lower: Lower bound of the sequential interval (fraction).
        upper: Upper bound of the sequential interval (fraction).
        naive_p: Fixed-horizon two-sided p-value of this look alone (not valid when read daily).
        stop: Whether the look crosses its boundary (the sequential interval excludes 0).
    """

    day: int
    until: dt.datetime
    users: int
    control_mean: float
    treatment_mean: float
    effect: float
    se: float
    z: float
    information: float
    boundary: float
    lower: float
    upper: float
    naive_p: float
    stop: bool


@dataclass
class Monitoring:
    """The result of `monitor`; render it with `to_dict` or `to_string(format)`."""

    experiment: str
    metric: str
    control: int
    treatment: int
    method: str
    alpha: float
    planned_days: int
    planned_users: int
    information: str = "variance"
    looks: list[Look] = field(default_factory=list)

    @property
    def stop_day(self) -> int | None:
        """The first day whose look could have stopped the experiment, or None."""
        return next((look.day for look in self.looks if look.stop), None)

    def summary(self) -> str:
        """One line: when the experiment could have stopped, or that it could not yet."""
        day = self.stop_day
        if day is None:
            return "no look crossed its boundary: keep going (or stop at the planned end for no significant effect)"
        look = next(look for look in self.looks if look.stop)
        direction = "up" if look.effect > 0 else "down"
        return f"could have stopped on day {day} ({look.until:%Y-%m-%d}): {self.metric} {direction} {100 * look.effect:+.2f}%"

    def to_dict(self) -> dict[str, object]:
        """Settings, one dict per look (fractions, `until` as ISO time, inf boundaries as null) and the stop day."""
        looks = []
        for look in self.looks:
            row = asdict(look)
            row["until"] = look.until.isoformat()
            row["boundary"] = None if math.isinf(look.boundary) else look.boundary
            looks.append(row)
        return {
            "experiment": self.experiment, "metric": self.metric, "control": self.control, "treatment": self.treatment,
            "method": self.method, "alpha": self.alpha, "planned_days": self.planned_days, "planned_users": self.planned_users,
            "information": self.information, "looks": looks,
            "stop_day": self.stop_day,
        }

    def to_string(self, format: str = "table") -> str:
        """'table' or 'json'."""
        if format == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        head = ["day", "users", "effect", "sequential interval", "|z|", "boundary", "naive p", "stop"]
        body = [
            [f"{look.day}", f"{look.users}", f"{100 * look.effect:+.2f}%", f"{100 * look.lower:+.2f}% .. {100 * look.upper:+.2f}%",
             f"{abs(look.z):.2f}", "inf" if math.isinf(look.boundary) else f"{look.boundary:.3f}", f"{look.naive_p:.4f}",
             "STOP" if look.stop else ""]
            for look in self.looks
        ]
        widths = [max(len(h), *(len(cells[i]) for cells in body)) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:>{w}}}" for w in widths)
        lines = [
            f"experiment {self.experiment!r}: {self.metric}, T{self.treatment} vs C{self.control}, daily looks, "
            f"{self.method} at alpha {self.alpha:g} (planned: {self.planned_days} looks, {self.planned_users} users"
            + ("" if self.method == "confidence-sequence" else f"; information fractions by {INFORMATION[self.information]}") + ")",
            fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*cells) for cells in body),
            self.summary(),
        ]
        return "\n".join(lines) + "\n"


def _relative(metric: MetricBaseAggregated, data: dict, control: int, treatment: int) -> tuple[float, float, float, float, float]:
    """(control value, treatment value, relative effect, its delta-method se, variance of the
    difference of means) from per-arm aggregates."""
    c, t = metric.estimate(data[control]), metric.estimate(data[treatment])
    cv, tv = float(c.value), float(t.value)
    if cv == 0:
        raise AbtestError("the control arm's metric is 0 so far: a relative effect is undefined")
    se = math.sqrt(float(t.variance) / cv**2 + tv**2 * float(c.variance) / cv**4)
    return cv, tv, tv / cv - 1.0, se, float(c.variance) + float(t.variance)


def monitor(
    log: EventLog,
    metric_name: str,
    metric: MetricBaseAggregated,
    *,
    experiment: str | None,
    control: int,
    treatment: int,
    method: str,
    alpha: float,
    day_zero: dt.date | None,
    planned_days: int | None = None,
    planned_users: int | None = None,
) -> Monitoring:
    """Look at `metric` at the end of every day of the experiment and say whether each look may stop it.

    Args:
        log: An open event log.
        metric_name: The metric's name, for the rendering.
        metric: The metric analysed.
        experiment: Experiment name (None: the serving one).
        control: Control arm index.
        treatment: Treatment arm index.
        method: 'obf', 'pocock' or 'confidence-sequence'.
        alpha: Two-sided level of the whole sequential procedure.
        day_zero: Date of simulated day 0 (None: the day of the experiment's first session).
        planned_days: Days (looks) planned, for the spending boundaries; None: the days the log spans.
        planned_users: Users at the planned end (both arms), where the confidence sequence is
            tightest; None: those of the last look.
    """
    if method not in METHODS:
        raise AbtestError(f"method {method!r} unknown; choose from {', '.join(METHODS)}")
    if planned_users is not None and planned_users < 2:
        raise AbtestError(f"planned_users == {planned_users}, must be >= 2")
    if planned_days is not None and planned_days < 1:
        raise AbtestError(f"planned_days == {planned_days}, must be >= 1")
    whole, _ = arm_data(log, metric.aggr_cols, experiment=experiment)
    check_arms(whole, control, [treatment])
    name = whole.info.name
    first_day = dt.datetime.combine(whole.first.date(), dt.time())
    origin = first_day if day_zero is None else dt.datetime.combine(day_zero, dt.time())
    ends = []
    end = first_day + dt.timedelta(days=1)
    while end <= whole.last:
        ends.append(end)
        end += dt.timedelta(days=1)
    ends.append(end)
    rows = []
    for index, until in enumerate(ends):
        try:
            data, _ = arm_data(log, metric.aggr_cols, experiment=name, filters=Filters(until=until))
        except AbtestError:
            continue  # nothing completed by this look yet
        if control not in data.aggregates or treatment not in data.aggregates:
            continue
        a, b = data.aggregates[control], data.aggregates[treatment]
        if a.count < 2 or b.count < 2:
            continue
        rows.append((until, index, a.count + b.count, *_relative(metric, data.aggregates, control, treatment)))
    if not rows:
        raise AbtestError(f"experiment {name!r} never has two users in both arms at the end of a day: nothing to monitor")
    users = np.array([row[2] for row in rows], dtype=float)
    planned = int(planned_users or users[-1])
    days = planned_days or len(ends)
    if days < len(ends):
        raise AbtestError(f"planned_days == {days}, but experiment {name!r} already ran {len(ends)} days")
    information = "variance"
    if method == "confidence-sequence":
        bounds = np.asarray(sequential.half_width_factor(users, planned, alpha), dtype=float)
    else:
        variance = users**2 * np.array([row[-1] for row in rows])
        if days == len(ends) and np.all(np.diff(variance) > 0) and variance[0] > 0:
            bounds = groupseq.spending_boundaries(variance, alpha, method)
        else:
            information = "days"
            c = groupseq.spending_boundaries(np.arange(1.0, days + 1), alpha, method)
            bounds = c[[row[1] for row in rows]]
    looks = []
    for (until, _, n, cv, tv, effect, se, var), bound in zip(rows, bounds.tolist(), strict=True):
        z = effect / se if se > 0 else (0.0 if effect == 0 else math.copysign(math.inf, effect))
        half = math.inf if math.isinf(bound) else bound * se
        looks.append(Look(
            day=((until - dt.timedelta(days=1)) - origin).days, until=until, users=int(n), control_mean=cv, treatment_mean=tv,
            effect=effect, se=se, z=z, information=float(n) ** 2 * var, boundary=bound, lower=effect - half, upper=effect + half,
            naive_p=float(2 * ndtr(-abs(z))), stop=bool(abs(z) >= bound),
        ))
    return Monitoring(name, metric_name, control, treatment, method, alpha, days, planned, information, looks)
