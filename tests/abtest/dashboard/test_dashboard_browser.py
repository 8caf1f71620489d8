"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against `abtest
serve` (granian) in its own process. Pages load without console errors, charts are drawn with the
expected series, the numbers shown are the CLI's, and an open page shows a new simulated day."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import urllib3
from click.testing import CliRunner
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from abtest.cli import main as abtest_cli
from sim.run.__main__ import main as run_cli
from tests.botify.live import HOST, free_port

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/setup.sh); Playwright's own download is never used
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
START_TIMEOUT = 60.0  # seconds for `abtest serve` to answer, on a loaded machine
POLL_S = 1.0  # the pages' refresh period in these tests
WAIT_MS = 30_000  # the longest a page may take to draw or to show a new day, on a loaded machine


class Dashboard:
    """`abtest serve` on a free loopback port, in its own process group."""

    def __init__(self, log: Path, out: Path, extra: Sequence[str] = ()) -> None:
        self.url = f"http://{HOST}:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.out = out
        command = [sys.executable, "-m", "abtest", "serve", "--log", str(log), "--port", port, "--poll", str(POLL_S), *extra]
        with open(out, "ab") as stream:
            self.process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)
        http = urllib3.PoolManager(retries=False, timeout=2.0)
        started = time.monotonic()
        while time.monotonic() - started < START_TIMEOUT:
            if self.process.poll() is not None:
                raise RuntimeError(f"abtest serve exited with {self.process.returncode}:\n{out.read_text()}")
            try:
                if http.request("GET", self.url + "/experiments.json").status == 200:
                    return
            except urllib3.exceptions.HTTPError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError(f"abtest serve did not answer within {START_TIMEOUT} s:\n{out.read_text()}")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def dashboard(dashboard_log: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    server = Dashboard(dashboard_log, tmp_path_factory.mktemp("serve") / "serve.out")
    yield server
    server.close()


def open_page(browser: Browser, url: str, width: int = 1280) -> tuple[Page, list[str]]:
    """A new page at `url`, with every console error and uncaught exception collected."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    return page, errors


def trace_names(page: Page, chart: str) -> list[str]:
    """Names of the series plotly drew in chart `chart` (its `data`), once its SVG traces exist."""
    page.wait_for_selector(f"#{chart} .main-svg .trace", timeout=WAIT_MS)
    return page.evaluate(f"() => document.getElementById('{chart}').data.map(t => t.name)")


def cli_report(log: Path) -> list[dict]:
    result = CliRunner().invoke(abtest_cli, ["report", "--log", str(log), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_experiment_page_draws_every_chart_and_shows_the_clis_numbers(browser: Browser, dashboard: Dashboard, dashboard_log: Path) -> None:
    page, errors = open_page(browser, f"{dashboard.url}/experiments/exp")

    assert trace_names(page, "forest-listening") == ["T1 (rec1)", "T2 (rec2)"]
    assert trace_names(page, "forest-latency") == ["T1 (rec1)", "T2 (rec2)"]
    assert trace_names(page, "cumulative") == [
        f"{arm} {part}".strip() for arm in ("T1 (rec1)", "T2 (rec2)") for part in ("upper", "lower", "", "always-valid lower", "always-valid upper")
    ]
    assert trace_names(page, "sessions") == ["C (rec0)", "T1 (rec1)", "T2 (rec2)"]
    assert trace_names(page, "session-time") == ["C (rec0)", "T1 (rec1)", "T2 (rec2)"]
    assert trace_names(page, "latency") == [f"rec{i} {q}" for i in range(3) for q in ("p50", "p99")]
    # The forest plot's points are the report's effects; the latency one has its own axis.
    listening = page.evaluate("() => document.getElementById('forest-listening').data[0].x")
    report = cli_report(dashboard_log)
    assert listening == [r["effect"] for r in report if r["treatment"] == 1 and r["metric"] != "mean_request_latency"]
    latency_range = page.evaluate("() => document.getElementById('forest-latency')._fullLayout.xaxis.range")
    listening_range = page.evaluate("() => document.getElementById('forest-listening')._fullLayout.xaxis.range")
    assert latency_range[1] > 100 > listening_range[1]
    # The table's cells carry the report's numbers; the text is the report's rounding.
    shown = page.evaluate("""() => [...document.querySelectorAll('#metrics tbody tr')].map(tr => ({
        metric: tr.dataset.metric, treatment: Number(tr.dataset.treatment), verdict: tr.className,
        cells: Object.fromEntries([...tr.querySelectorAll('td[data-key]')].map(td => [td.dataset.key, [td.dataset.value, td.textContent]]))}))""")
    assert [(s["metric"], s["treatment"]) for s in shown] == [(r["metric"], r["treatment"]) for r in report]
    for row, expected in zip(shown, report, strict=True):
        assert float(row["cells"]["effect"][0]) == expected["effect"]
        assert row["cells"]["effect"][1] == f"{expected['effect']:+.3f}%"
        assert float(row["cells"]["p_value"][0]) == expected["p_value"]
        assert int(row["cells"]["treatment_users"][1]) == expected["treatment_users"]
    verdicts = {(s["metric"], s["treatment"]): s["verdict"] for s in shown}
    assert verdicts["mean_request_latency", 1] == "worse" and verdicts["time", 1] == "better"
    colour = page.evaluate("() => getComputedStyle(document.querySelector('#metrics tr.worse td')).backgroundColor")
    assert colour == "rgb(255, 235, 238)"  # red for the latency regression
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280  # nothing overflows at 1280 px
    page.wait_for_function("() => window.dashboard.polls >= 1", timeout=WAIT_MS)  # the page polls its JSON twin
    assert errors == []
    page.close()


def test_the_list_page_and_a_phone_width(browser: Browser, dashboard: Dashboard, dashboard_log: Path) -> None:
    page, errors = open_page(browser, f"{dashboard.url}/experiments", width=390)
    report = cli_report(dashboard_log)

    users = page.evaluate("() => [...document.querySelectorAll('#experiments .arm')].map(a => Number(a.dataset.users))")
    assert users == [report[0]["control_users"], report[0]["treatment_users"], report[5]["treatment_users"]]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # the table scrolls, the page does not
    page.click("#experiments a")
    assert trace_names(page, "sessions") == ["C (rec0)", "T1 (rec1)", "T2 (rec2)"]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert errors == []
    page.close()


def test_an_open_page_shows_a_new_day_of_a_running_simulation(browser: Browser, small_world_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "live.duckdb"
    config = tmp_path / "env.yml"
    config.write_text(f"world: {small_world_dir}\n")
    day = ["--episodes", "60", "--config", str(config), "--recommender", "local:sticky_artist", "--log", str(log), "--quiet"]
    assert CliRunner().invoke(run_cli, day).exit_code == 0
    server = Dashboard(log, tmp_path / "serve.out")
    try:
        page, errors = open_page(browser, f"{server.url}/experiments/local")
        assert trace_names(page, "sessions") == ["C (sticky_artist)"]
        bins = page.evaluate("() => window.dashboard.page.sessions.rows.map(r => r.bin)")
        assert bins and all(b.startswith("2026-01-01") for b in bins)
        assert "single treatment" in page.inner_text(".note")  # one treatment: nothing to compare, charts still drawn

        result = CliRunner().invoke(run_cli, [*day, "--start-day", "2"])
        assert result.exit_code == 0, result.output

        page.wait_for_function(
            "() => window.dashboard.page.sessions.rows.some(r => r.bin.startsWith('2026-01-02'))", timeout=WAIT_MS
        )
        page.wait_for_function(
            "() => document.querySelector('#sessions-table').textContent.includes('2026-01-02')", timeout=WAIT_MS
        )
        drawn = page.evaluate("() => document.getElementById('sessions').data[0].x")
        assert any(x.startswith("2026-01-02") for x in drawn)  # the chart was redrawn, not only the table
        assert errors == []
        page.close()
    finally:
        server.close()
