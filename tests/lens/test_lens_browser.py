"""The recommender and track pages in headless Chromium against `abtest serve --artifacts --world`:
the training curve and the tag chart are drawn with their series and the threshold, no console errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from contracts.catalog import Catalog
from tests.abtest.dashboard.test_dashboard_browser import Dashboard, browser, open_page, trace_names

__all__ = ["browser"]


@pytest.fixture(scope="module")
def lens_dashboard(lens_log: Path, lens_artifacts: Path, small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    server = Dashboard(lens_log, tmp_path_factory.mktemp("lens-serve") / "serve.out",
                       ["--artifacts", str(lens_artifacts), "--world", str(small_world_dir)])
    yield server
    server.close()


def test_the_track_page_draws_the_tag_chart_with_threshold_and_marks(browser: Browser, lens_dashboard: Dashboard, small_world_dir: Path) -> None:
    catalog = Catalog(small_world_dir)
    track = next(t for t in range(catalog.n_tracks) if len(catalog.tags(t)) > 0)
    page, errors = open_page(browser, f"{lens_dashboard.url}/tracks/{track}")

    assert trace_names(page, "tags-chart") == ["probability", "observed", "true"]
    data = page.evaluate("() => window.dashboard.page.tags")
    shapes = page.evaluate("() => document.getElementById('tags-chart').layout.shapes.map(s => s.x0)")
    assert shapes == [data["threshold"]]
    bars = page.evaluate("() => document.getElementById('tags-chart').data[0].x")
    assert bars == [r["probability"] for r in data["rows"][: len(bars)]] and len(bars) == 40
    assert page.locator("#tags-chart .bars path").count() >= 1  # the SVG bars exist
    assert page.locator(".neighbours[data-artifact='tags'] tbody tr").count() == 10
    assert errors == []
    page.close()


def test_the_recommenders_page_draws_the_training_curve(browser: Browser, lens_dashboard: Dashboard) -> None:
    page, errors = open_page(browser, f"{lens_dashboard.url}/recommenders")
    names = trace_names(page, "history-tags")
    assert "train_loss" in names and len(names) >= 2
    assert errors == []
    page.close()
