"""The latency chart's quantiles from log-bucket histograms: within 0.5% of `quantile_cont`'s."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest
from flask.testing import FlaskClient

from abtest.dashboard.latency import RELATIVE_ERROR, quantiles

# Floating-point slack on top of the bound: the bound is exact arithmetic, the check is in doubles.
SLACK = 1e-12


def within(approx: float, exact: float) -> bool:
    return abs(approx - exact) <= RELATIVE_ERROR * abs(exact) + SLACK


@pytest.mark.parametrize("n", [1, 2, 3, 101, 5_000])
def test_histogram_quantiles_are_within_the_bound_of_the_exact_interpolated_ones(n: int) -> None:
    rng = np.random.default_rng(n)
    values = np.concatenate([rng.lognormal(-6.0, 1.5, n), np.zeros(n // 50)])  # seconds, a few zeros
    buckets = duckdb.execute(
        "SELECT list(b) FROM (SELECT CASE WHEN x <= 1e-9 THEN -2147483648 ELSE ceil(ln(x) / ln((1 + ?) / (1 - ?)))::INTEGER END AS b FROM unnest(?::DOUBLE[]) AS t(x))",
        [RELATIVE_ERROR, RELATIVE_ERROR, values.tolist()],
    ).fetchall()[0][0]
    found, counts = np.unique(np.asarray(buckets), return_counts=True)

    for q, approx in zip((0.5, 0.99), quantiles(found.tolist(), counts.tolist()), strict=True):
        exact = float(np.quantile(values, q))  # linear interpolation, as quantile_cont
        assert approx is not None and within(approx, exact), (q, approx, exact)


def test_nothing_counted_has_no_quantile() -> None:
    assert quantiles([], []) == [None, None]


def test_the_charts_quantiles_are_within_the_bound_of_quantile_cont_and_its_requests_exact(client: FlaskClient, dashboard_log: Path) -> None:
    chart = client.get("/experiments/exp.json").get_json()["latency"]
    width = chart["bin_seconds"]
    with duckdb.connect(str(dashboard_log), read_only=True) as con:
        exact = {
            (rec, start.isoformat()): (n, p50, p99)
            for rec, start, n, p50, p99 in con.execute(
                f"""SELECT recommender, time_bucket(INTERVAL {width} SECONDS, ts, TIMESTAMP '1970-01-01'), count(*),
                           quantile_cont(latency, 0.5) * 1000, quantile_cont(latency, 0.99) * 1000
                    FROM events WHERE map_contains(experiments, 'exp') GROUP BY ALL"""
            ).fetchall()
        }

    assert chart["relative_error"] == RELATIVE_ERROR
    assert {(r["recommender"], r["bin"]) for r in chart["rows"]} == set(exact)
    for row in chart["rows"]:
        n, p50, p99 = exact[(row["recommender"], row["bin"])]
        assert row["requests"] == n
        assert within(row["p50_ms"], p50) and within(row["p99_ms"], p99), (row, p50, p99)
