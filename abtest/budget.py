"""Absolute guardrails: budgets such as 'p99_latency_ms<=5' or 'error_rate<=0.01' on a treatment's own value.

A relative gate compares a treatment with the control, so a latency that grows from 0.04 ms to
0.35 ms fails a 2% gate although no one would notice it. A budget is what a service owner
means: the treatment's value of a quantity must stay on one side of a limit. Quantities are the
report's metrics (the treatment arm's value, in the report's units: latency in ms, rates as
fractions) and latency percentiles of the arm's requests, `pQ_latency_ms` for any 0 < Q < 100
(DuckDB's `quantile_cont`, linear interpolation). The value compared is the one observed in the
log, not an interval bound: a budget is a limit on what the service did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from abtest.errors import AbtestError
from abtest.metrics import METRIC_NAMES
from abtest.sessionize import events_sql
from contracts.columns import MESSAGE_LAST, Columns, quote

_BUDGET = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*(ms|%)?\s*$")
_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)_latency_ms$")
EXAMPLES = "p99_latency_ms<=5, error_rate<=0.01 or mean_time_per_session>=3"


@dataclass(frozen=True)
class Budget:
    """A limit on a treatment's own value of one quantity.

    Attributes:
        quantity: A metric name (`abtest.metrics.METRIC_NAMES`) or `pQ_latency_ms`.
        op: '<=' (the value must not exceed the limit) or '>=' (must not fall below it).
        limit: The limit, in the quantity's units (ms for latency, a fraction for rates).
    """

    quantity: str
    op: str
    limit: float

    @property
    def percentile(self) -> float | None:
        """Q of a `pQ_latency_ms` budget, else None."""
        match = _PERCENTILE.match(self.quantity)
        return float(match.group(1)) if match else None

    def holds(self, value: float) -> bool:
        """Whether `value` keeps the budget."""
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{self.quantity}{self.op}{self.limit:g}"


def parse_budget(text: str) -> Budget:
    """A budget from 'QUANTITY<=LIMIT' or 'QUANTITY>=LIMIT' ('%' after a limit divides it by 100).

    Raises:
        AbtestError: the text is malformed, the quantity unknown or the percentile out of range.
    """
    match = _BUDGET.match(text)
    if match is None:
        raise AbtestError(f"budget {text!r} is not QUANTITY<=LIMIT or QUANTITY>=LIMIT (e.g. {EXAMPLES})")
    quantity, op, number, unit = match.groups()
    try:
        limit = float(number)
    except ValueError:
        raise AbtestError(f"budget {text!r}: limit {number!r} is not a number") from None
    if unit == "%":
        limit /= 100.0
    percentile = _PERCENTILE.match(quantity)
    if percentile is not None:
        q = float(percentile.group(1))
        if not 0 < q < 100:
            raise AbtestError(f"budget {text!r}: percentile {q:g} must be in (0, 100)")
        if unit == "%":
            raise AbtestError(f"budget {text!r}: a latency limit is in ms, not %")
    elif quantity not in METRIC_NAMES:
        raise AbtestError(
            f"budget {text!r}: unknown quantity {quantity!r}; use a metric ({', '.join(METRIC_NAMES)}) or pQ_latency_ms such as p99_latency_ms"
        )
    elif unit == "ms" and quantity != "mean_request_latency":
        raise AbtestError(f"budget {text!r}: only latencies are in ms")
    return Budget(quantity, op, limit)


def latency_percentile_sql(experiment: str, arm: int, q: float, errors: bool) -> tuple[str, list[object]]:
    """SQL and parameters of the q-th percentile (ms) of the latency of `arm`'s requests in `experiment`."""
    ev = events_sql(experiment, errors)
    sql = f"""
        SELECT quantile_cont({quote(Columns.LATENCY)} * 1000, ?) FROM ({ev.sql}) AS ev
        WHERE arm = ? AND {quote(Columns.MESSAGE)} <> '{MESSAGE_LAST}' AND {quote(Columns.LATENCY)} IS NOT NULL"""
    return sql, [q / 100.0, *ev.params, arm]
