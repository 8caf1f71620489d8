"""The dashboard's app through Flask's test client: HTML pages and their JSON twins, the same numbers
as `abtest report --format json`, direction-aware verdicts, CSV downloads and one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from abtest.cli import main
from abtest.dashboard import data
from abtest.dashboard.app import create_app
from abtest.errors import AbtestError
from abtest.metrics import REPORT_METRICS
from abtest.sessionize import DAY_ZERO


def cli_json(log: Path, *args: str) -> list[dict]:
    result = CliRunner().invoke(main, ["report", "--log", str(log), "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_front_page_lists_the_experiment_with_arms_listeners_and_the_sample_ratio_check(client: FlaskClient, dashboard_log: Path) -> None:
    page = client.get("/experiments.json").get_json()
    report = cli_json(dashboard_log)

    (item,) = page["experiments"]
    assert item["name"] == "exp" and item["serving"] is True
    assert [a["label"] for a in item["arms"]] == ["C (rec0)", "T1 (rec1)", "T2 (rec2)"]
    by_treatment = {row["treatment"]: row for row in report}
    assert item["arms"][0]["users"] == by_treatment[1]["control_users"]
    assert [a["users"] for a in item["arms"][1:]] == [by_treatment[1]["treatment_users"], by_treatment[2]["treatment_users"]]
    assert item["srm"]["p_value"] == pytest.approx(report[0]["srm_p_value"], rel=1e-12)
    assert item["srm"]["mismatch"] is False
    html = client.get("/experiments").get_data(as_text=True)
    assert 'href="/experiments/exp"' in html and "T1 (rec1): " in html and "ok (p = " in html
    assert client.get("/").headers["Location"].endswith("/experiments")


@pytest.mark.parametrize("query, args", [
    ("", ()),
    ("?treatment=1&days=2:5", ("--treatment", "1", "--days", "2:5")),
    ("?control=2&treatment=1&estimand=ratio-of-sums&metric=time&metric=mean_request_latency",
     ("--control", "2", "--treatment", "1", "--estimand", "ratio-of-sums", "--metric", "time", "--metric", "mean_request_latency")),
])
def test_the_experiment_json_has_the_reports_numbers_for_the_same_filters(client: FlaskClient, dashboard_log: Path, query: str, args: tuple[str, ...]) -> None:
    page = client.get(f"/experiments/exp.json{query}").get_json()
    report = cli_json(dashboard_log, *args)

    assert len(page["metrics"]) == len(report)
    for row, expected in zip(page["metrics"], report, strict=True):
        assert {k: row[k] for k in expected} == expected  # every key of the CLI's JSON, the same value


def test_verdicts_follow_each_metrics_direction(client: FlaskClient) -> None:
    rows = {(r["metric"], r["treatment"]): r for r in client.get("/experiments/exp.json").get_json()["metrics"]}

    assert rows["time", 1]["tone"] == "better" and rows["time", 1]["effect"] > 0
    latency = rows["mean_request_latency", 1]
    assert latency["effect"] > 100 and latency["direction"] == "lower" and latency["tone"] == "worse"
    assert rows["time", 2]["tone"] == "neutral"  # the A/A arm
    html = client.get("/experiments/exp").get_data(as_text=True)
    assert re.search(r'<tr class="worse" data-metric="mean_request_latency" data-treatment="1">', html)
    assert re.search(r'<tr class="better" data-metric="time" data-treatment="1">', html)


def test_the_page_colours_a_row_by_the_reports_verdict() -> None:
    assert data.tone("improvement") == "better" and data.tone("regression") == "worse" and data.tone("") == "neutral"


def test_forest_plots_keep_latency_apart_from_listening(client: FlaskClient) -> None:
    forest = {f["family"]: f["rows"] for f in client.get("/experiments/exp.json").get_json()["forest"]}

    assert {r["metric"] for r in forest["latency"]} == {"mean_request_latency"}
    assert {r["metric"] for r in forest["listening"]} == set(REPORT_METRICS) - {"mean_request_latency"}


def test_the_cumulative_effect_ends_at_the_reports_effect(client: FlaskClient, dashboard_log: Path) -> None:
    page = client.get("/experiments/exp.json").get_json()
    report = {(r["metric"], r["treatment"]): r for r in cli_json(dashboard_log)}

    days = sorted({p["day"] for p in page["cumulative"]})
    assert days[0] == 1 and days == list(range(1, days[-1] + 1)) and len(days) >= 3  # from 2026-01-01, day 1
    last = [p for p in page["cumulative"] if p["day"] == days[-1]]
    assert len(last) == len(report)
    for point in last:
        expected = report[point["metric"], point["treatment"]]
        assert (point["effect"], point["lower"], point["upper"]) == (expected["effect"], expected["lower"], expected["upper"])
    sessions = [p["control_mean"] for p in page["cumulative"] if p["metric"] == "sessions" and p["treatment"] == 1]
    assert all(a < b for a, b in zip(sessions, sessions[1:], strict=False))  # sessions per listener accumulate day by day


@pytest.mark.parametrize("query, args", [
    ("", ()),
    ("?control=2&treatment=1&estimand=ratio-of-sums", ("--control", "2", "--treatment", "1", "--estimand", "ratio-of-sums")),
    ("?days=3:4", ("--days", "3:4")),  # one day
])
def test_every_days_cumulative_effect_is_the_report_until_that_days_end(client: FlaskClient, dashboard_log: Path, query: str, args: tuple[str, ...]) -> None:
    page = client.get(f"/experiments/exp.json{query}").get_json()
    keys = ("effect", "lower", "upper", "control_mean", "treatment_mean", "control_users", "treatment_users")

    for day in sorted({p["day"] for p in page["cumulative"]}):
        end = dt.datetime.combine(DAY_ZERO + dt.timedelta(days=day + 1), dt.time())
        report = {(r["metric"], r["treatment"]): r for r in cli_json(dashboard_log, *args, "--until", f"{end:%Y-%m-%d}")}
        points = [p for p in page["cumulative"] if p["day"] == day]
        assert len(points) == len(report)
        for point in points:
            expected = report[point["metric"], point["treatment"]]
            assert {k: point[k] for k in keys} == {k: expected[k] for k in keys}  # exactly, not approximately


def test_the_cumulative_effect_has_the_always_valid_band_of_a_confidence_sequence(client: FlaskClient) -> None:
    from scipy.stats import norm

    from abtest.sequential import half_width_factor

    page = client.get("/experiments/exp.json").get_json()
    points = [p for p in page["cumulative"] if p["effect"] is not None]
    z = norm.ppf(1 - page["alpha"] / 2)

    assert points and all(p["always_lower"] < p["lower"] and p["upper"] < p["always_upper"] for p in points)
    for metric, treatment in {(p["metric"], p["treatment"]) for p in points}:
        looks = [p for p in points if (p["metric"], p["treatment"]) == (metric, treatment)]
        n = [p["control_users"] + p["treatment_users"] for p in looks]
        for point, users in zip(looks, n, strict=True):
            # The band is the effect +- the fixed interval's standard error times the sequence's factor,
            # tuned to be tightest at the last day's users.
            factor = float(half_width_factor(users, max(n), page["alpha"]))
            assert point["always_upper"] - point["effect"] == pytest.approx((point["upper"] - point["lower"]) / 2 * factor / z, rel=1e-9)
            assert point["effect"] - point["always_lower"] == pytest.approx(point["always_upper"] - point["effect"], rel=1e-9)


def test_sessions_and_latency_series_add_up_to_the_log(client: FlaskClient, dashboard_log: Path) -> None:
    import duckdb

    page = client.get("/experiments/exp.json").get_json()
    with duckdb.connect(str(dashboard_log), read_only=True) as con:
        sessions = con.execute("SELECT count(DISTINCT (\"user\", session)) FROM events").fetchone()[0]
        requests = dict(con.execute("SELECT recommender, count(*) FROM events GROUP BY 1").fetchall())
        p99 = con.execute("SELECT quantile_cont(latency, 0.99) * 1000 FROM events WHERE recommender = 'rec1'").fetchone()[0]

    assert sum(r["sessions"] for r in page["sessions"]["rows"]) == sessions
    counted: dict[str, int] = {}
    for row in page["latency"]["rows"]:
        counted[row["recommender"]] = counted.get(row["recommender"], 0) + row["requests"]
        assert row["p50_ms"] <= row["p99_ms"]
    assert counted == requests
    rec1 = [r["p99_ms"] for r in page["latency"]["rows"] if r["recommender"] == "rec1"]
    assert min(rec1) <= p99 <= max(rec1)


@pytest.fixture(scope="module")
def flawed_log(dashboard_log: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dashboard's log with a row in about 300 broken in each way the analysis drops a row."""
    import shutil

    import duckdb

    path = tmp_path_factory.mktemp("flawed") / "events.duckdb"
    shutil.copy(dashboard_log, path)
    with duckdb.connect(str(path)) as con:
        for column, value, remainder in (("ts", "NULL", 0), ("latency", "'NaN'", 1), ("latency", "-1", 2), ("time", "2", 3),
                                         ("message", "'skip'", 4), ("experiments", "NULL", 5), ('"user"', "NULL", 6)):
            con.execute(f"UPDATE events SET {column} = {value} WHERE rowid % 2003 = {remainder}")
    return path


@pytest.mark.parametrize("query, args", [("", ()), ("?days=2:4", ("--days", "2:4"))])
def test_rows_with_a_problem_are_counted_as_the_report_counts_them_and_left_out_of_the_latency_chart(
    flawed_log: Path, query: str, args: tuple[str, ...]
) -> None:
    import duckdb

    page = create_app({"LOG": str(flawed_log), "CACHE": False}).test_client().get(f"/experiments/exp.json{query}").get_json()
    report = cli_json(flawed_log, *args)
    with duckdb.connect(str(flawed_log), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM events").fetchone()[0]

    assert report[0]["dropped_rows"] == sum(len(range(remainder, rows, 2003)) for remainder in range(7))
    for row, expected in zip(page["metrics"], report, strict=True):
        assert {k: row[k] for k in expected} == expected
    assert sum(r["requests"] for r in page["latency"]["rows"]) == rows - report[0]["dropped_rows"]
    assert all(r["p99_ms"] <= 60_000 for r in page["latency"]["rows"])


def test_the_latency_chart_has_the_bins_of_the_events_span_whatever_the_guess(dashboard_log: Path) -> None:
    from abtest.experiment import BIN_WIDTHS
    from abtest.log import EventLog

    with EventLog.open(dashboard_log) as log:
        charts = [data.latency(log, "exp", guess) for guess in (None, *BIN_WIDTHS)]

    assert charts[0]["bin_seconds"] == 3 * 3600 and len(charts[0]["rows"]) > 3 * 30  # five days in 3-hour bins, three recommenders
    assert all(chart == charts[0] for chart in charts[1:])


def test_every_chart_has_its_numbers_as_csv(client: FlaskClient) -> None:
    page = client.get("/experiments/exp.json").get_json()
    for part, rows in (("metrics", page["metrics"]), ("cumulative", page["cumulative"]),
                       ("sessions", page["sessions"]["rows"]), ("latency", page["latency"]["rows"])):
        response = client.get(f"/experiments/exp/{part}.csv")
        assert response.status_code == 200 and response.mimetype == "text/csv"
        lines = response.get_data(as_text=True).splitlines()
        assert set(lines[0].split(",")) == set(rows[0]) and len(lines) == len(rows) + 1
    assert client.get("/experiments/exp/nope.csv").status_code == 404


@pytest.mark.parametrize("query, message", [
    ("?control=x", "control == 'x', must be an integer treatment index"),
    ("?treatment=7", "treatment 7 is not in experiment 'exp': it has treatments 0..2"),
    ("?days=5", "days == '5', must be FIRST:LAST such as 1:8"),
    ("?metric=clicks", "metric == 'clicks', must be one of"),
    ("?relative=bayes", "relative == 'bayes', must be one of fieller, delta"),
    ("?day_zero=yesterday", "day_zero == 'yesterday', must be a date YYYY-MM-DD or 'first'"),
])
def test_bad_query_arguments_get_a_400_with_one_line(client: FlaskClient, query: str, message: str) -> None:
    response = client.get(f"/experiments/exp.json{query}")
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    html = client.get(f"/experiments/exp{query}")
    assert html.status_code == 400 and "Traceback" not in html.get_data(as_text=True)


def test_an_unknown_experiment_is_a_404_that_lists_the_known_ones(client: FlaskClient) -> None:
    response = client.get("/experiments/nope.json")
    assert response.status_code == 404
    assert response.get_json() == {"error": "unknown experiment 'nope'; the log has: exp"}


def test_the_chart_library_is_served_from_the_installed_package(client: FlaskClient) -> None:
    response = client.get("/static/plotly.min.js")
    assert response.status_code == 200 and b"plotly.js" in response.get_data()[:2000]
    response.close()
    html = client.get("/experiments/exp").get_data(as_text=True)
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == ["/static/plotly.min.js", "/static/dashboard.js"]  # nothing from another host


def test_the_app_needs_a_log_and_serve_refuses_a_missing_one(tmp_path: Path) -> None:
    with pytest.raises(AbtestError, match="needs an event log"):
        create_app({})
    result = CliRunner().invoke(main, ["serve", "--log", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
    (tmp_path / "junk.duckdb").write_text("not a log")
    result = CliRunner().invoke(main, ["serve", "--log", str(tmp_path / "junk.duckdb")])
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output


def test_the_cache_reuses_an_answer_while_the_log_state_is_unchanged_only() -> None:
    from abtest.dashboard.app import StateCache

    cache, calls = StateCache(size=2), []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert cache.get("page", ("a", 1), compute) == 1
    assert cache.get("page", ("a", 1), compute) == 1  # reused
    assert cache.get("page", ("a", 2), compute) == 2  # the log changed
    assert cache.get("other", ("a", 2), compute) == 3
    assert cache.get("third", ("a", 2), compute) == 4  # "page" is dropped: the least recently used of three
    assert cache.get("page", ("a", 2), compute) == 5


def test_a_poll_takes_the_earlier_answer_while_the_current_one_is_computed_in_the_background() -> None:
    import threading

    from abtest.dashboard.app import StateCache

    cache, started, release = StateCache(), threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        assert release.wait(60)
        return "new"

    assert cache.get("page", 1, lambda: "old") == "old"
    assert cache.get("page", 2, slow, stale=True) == "old"  # at once, computed meanwhile
    assert started.wait(60)
    assert cache.get("page", 2, slow, stale=True) == "old"  # one refresh at a time: this call starts none
    release.set()
    for _ in range(6000):  # until the background refresh has stored its answer (bounded)
        if cache.get("page", 2, lambda: "computed again", stale=True) == "new":
            break
        threading.Event().wait(0.01)
    assert cache.get("page", 2, lambda: "computed again") == "new"
    assert cache.get("page", 3, lambda: "current") == "current"  # a caller that is not polling never gets a stale one


def test_a_polling_page_gets_the_new_log_at_a_later_poll(tmp_path: Path) -> None:
    import threading

    from abtest.synthetic import SyntheticExperiment, write_synthetic_log

    log = write_synthetic_log(tmp_path / "events.duckdb", 2_000, [SyntheticExperiment("exp")], seed=1)
    client = create_app({"LOG": str(log)}).test_client()
    poll = {"X-Dashboard-Poll": "1"}
    first = client.get("/experiments/exp.json").get_json()
    write_synthetic_log(log, 4_000, [SyntheticExperiment("exp")], seed=2)

    assert client.get("/experiments/exp.json", headers=poll).get_json() == first  # the latest answer, at once
    for _ in range(6000):  # bounded: until the background refresh is done
        again = client.get("/experiments/exp.json", headers=poll).get_json()
        if again != first:
            break
        threading.Event().wait(0.01)
    assert again == client.get("/experiments/exp.json").get_json() != first  # the new log's answer, as computed now


def test_the_log_state_changes_when_a_segment_is_sealed(tmp_path: Path) -> None:
    from contracts.eventlog import init_log
    from contracts.eventlog.reader import log_state

    log = tmp_path / "events.duckdb"
    layout = init_log(log)
    before = log_state(log)
    assert before == log_state(log) and str(log) in {path for path, _, _ in before}
    template = layout.segment_files("events")[0]
    (template.parent / "0000000000000000001-0-000001.parquet").write_bytes(template.read_bytes())

    assert log_state(log) != before


def test_a_cached_page_is_recomputed_when_the_log_changes(tmp_path: Path) -> None:
    from abtest.synthetic import SyntheticExperiment, write_synthetic_log

    log = write_synthetic_log(tmp_path / "events.duckdb", 2_000, [SyntheticExperiment("exp")], seed=1)
    client = create_app({"LOG": str(log)}).test_client()
    first = client.get("/experiments/exp.json").get_json()
    assert client.get("/experiments/exp.json").get_json() == first
    write_synthetic_log(log, 4_000, [SyntheticExperiment("exp")], seed=2)

    again = client.get("/experiments/exp.json").get_json()
    assert sum(a["users"] for a in again["arms"]) != sum(a["users"] for a in first["arms"])
