"""Order-independent sums in DuckDB, so that the same log always gives the same report, to the last bit.

DuckDB adds floating-point numbers in whatever order its threads deliver them, so the last bits of
a float sum (and of every mean, variance and p-value built on it) differ between two runs over the
same log. Sums of DECIMALs are integer sums and exact in any order. Every value is therefore
rounded to `DECIMAL` (nine decimal places: a nanosecond of latency, a billionth of a track) before
it is summed, and means, variances and covariances are finished in Python from the exact sums.
"""

from __future__ import annotations

import decimal
import math

# Rounding to 1e-9 moves a per-user mean by at most 5e-10, far below any effect worth reporting;
# values must stay below 10^9 (tracks, milliseconds) and sums of squares below 10^20. The type and
# the sums' SQL are declared with the log's session sums, which the event-log writer computes too.
from contracts.eventlog.groups import DECIMAL, LIMIT, rounded, total

__all__ = ["DECIMAL", "LIMIT", "add", "average", "covariance", "mean", "product_total", "rounded", "total"]

# Enough digits that (sum of squares) - (sum)^2 / n is computed without rounding for any count of
# users DuckDB can hold: the sums have at most 38 digits.
_CONTEXT = decimal.Context(prec=100)


def mean(expr: str) -> str:
    """SQL: the mean of `expr` (NULLs ignored, NULL when there are none) from its exact sum, a DOUBLE."""
    return f"({total(expr)} / count({expr}))"


def product_total(a: str, b: str) -> str:
    """SQL: the exact sum of `a * b` (rounded factors), the raw material of a variance or covariance."""
    return f"sum({rounded(a)} * {rounded(b)})"


def add(a: int | decimal.Decimal | None, b: int | decimal.Decimal | None) -> int | decimal.Decimal | None:
    """The exact sum of two sums read back from SQL (a count or a DECIMAL sum; None, SQL's sum of nothing, adds nothing)."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return _CONTEXT.add(a, b)


def covariance(
    n: int, sum_a: decimal.Decimal | None, sum_b: decimal.Decimal | None, sum_ab: decimal.Decimal | None
) -> float:
    """Sample covariance (variance when a is b) from exact sums over `n` values; nan below two values."""
    if n < 2 or sum_a is None or sum_b is None or sum_ab is None:
        return math.nan
    centred = _CONTEXT.subtract(sum_ab, _CONTEXT.divide(_CONTEXT.multiply(sum_a, sum_b), n))
    return float(_CONTEXT.divide(centred, n - 1))


def average(n: int, sum_a: decimal.Decimal | None) -> float:
    """Mean from an exact sum over `n` values; nan when there are none."""
    if n == 0 or sum_a is None:
        return math.nan
    return float(_CONTEXT.divide(sum_a, n))
