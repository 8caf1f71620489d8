"""The recommender and track pages through Flask's test client: the artifacts found, a track's
neighbours equal to the model's own ranking, and the tag chart's data (sorted probabilities, the
dynamic threshold, predicted, observed and true tags)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from flask import Flask

from abtest.cli import main as abtest_cli
from abtest.dashboard.app import create_app
from contracts.catalog import Catalog
from recommenders.base import Request
from recommenders.models.selection import DEFAULT_THRESHOLDS, assign_tags
from recommenders.registry import make
from sim.world import World


@pytest.fixture()
def app(lens_log: Path, lens_artifacts: Path) -> Flask:
    return create_app({"LOG": str(lens_log), "ARTIFACTS": str(lens_artifacts), "CACHE": False})


def labelled_track(catalog: Catalog) -> int:
    return next(t for t in range(catalog.n_tracks) if len(catalog.tags(t)) > 0)


def test_the_recommenders_page_lists_the_artifact_with_its_training_curve(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/recommenders.json").get_json()

    (artifact,) = page["artifacts"]
    assert artifact["name"] == "tags" and artifact["model"] == "tags"
    assert [row["epoch"] for row in artifact["history"]] == [1, 2]
    assert artifact["config"]["epochs"] == 2 and "test_macro_ap" in artifact["metrics"]
    html = client.get("/recommenders").get_data(as_text=True)
    assert 'id="history-tags"' in html and "test_macro_ap" in html
    assert 'href="/recommenders"' in client.get("/experiments").get_data(as_text=True)  # in the navigation


def test_the_recommenders_page_shows_the_saved_offline_evaluation(lens_log: Path, lens_artifacts: Path, tmp_path: Path) -> None:
    import shutil

    from recommenders.evaluation import Report

    artifacts = tmp_path / "artifacts"
    shutil.copytree(lens_artifacts, artifacts)
    report = Report()
    report.add("tags", {"cases": 120, "mrr": 0.25, "hit@1": 0.125})
    report.add("random", {"cases": 120, "mrr": 0.0625, "hit@1": 0.0})
    report.save(artifacts / "tags", {"test": "2026-01-02", "train": "2026-01-01", "cases": 120})
    client = create_app({"LOG": str(lens_log), "ARTIFACTS": str(artifacts), "CACHE": False}).test_client()

    (artifact,) = client.get("/recommenders.json").get_json()["artifacts"]
    assert artifact["evaluation"]["rows"] == report.to_dicts()
    assert artifact["evaluation"]["settings"]["test"] == "2026-01-02"
    html = client.get("/recommenders").get_data(as_text=True)
    table = html[html.index('<table class="evaluation"'):]
    table = table[: table.index("</table>")]
    assert '<tr class="model"><td>tags</td><td class="num">120</td><td class="num">0.25</td>' in table
    assert "<td>random</td>" in table


def test_an_artifact_without_a_saved_evaluation_says_how_to_save_one(app: Flask) -> None:
    client = app.test_client()

    (artifact,) = client.get("/recommenders.json").get_json()["artifacts"]
    assert artifact["evaluation"] is None
    assert "no offline evaluation saved" in client.get("/recommenders").get_data(as_text=True)


def test_a_tracks_neighbours_are_the_models_own_ranking(app: Flask, small_world_dir: Path, lens_artifacts: Path) -> None:
    catalog = Catalog(small_world_dir)
    track = labelled_track(catalog)
    page = app.test_client().get(f"/tracks/{track}.json?user=3").get_json()

    model = make("tags", catalog, artifact=lens_artifacts / "tags")
    expected = model.rank([Request(user=3, track=track, time=1.0, history=(track,), times=(1.0,))], 10)[0]
    (neighbours,) = page["neighbours"]
    assert [t["track"] for t in neighbours["tracks"]] == expected.tolist()
    assert page["track"]["track"] == track and page["user"] == 3
    assert track not in expected  # the track just played is never its own neighbour


def test_the_tag_chart_data_follows_the_dynamic_threshold(app: Flask, small_world_dir: Path, lens_artifacts: Path) -> None:
    catalog = Catalog(small_world_dir)
    track = labelled_track(catalog)
    tags = app.test_client().get(f"/tracks/{track}.json").get_json()["tags"]

    probabilities = [r["probability"] for r in tags["rows"]]
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) == catalog.n_tags
    assert tags["grid"] == list(DEFAULT_THRESHOLDS)
    best = probabilities[0]
    assert tags["threshold"] == next((t for t in DEFAULT_THRESHOLDS if best >= t), None)
    model = make("tags", catalog, artifact=lens_artifacts / "tags")
    scores = model.tag_scores(np.array([track]))
    predicted = {catalog.tag_names[i] for i in np.flatnonzero(assign_tags(scores)[0])}
    assert {r["tag"] for r in tags["rows"] if r["predicted"]} == predicted and predicted
    assert {r["tag"] for r in tags["rows"] if r["observed"]} == {catalog.tag_names[i] for i in catalog.tags(track)}
    assert tags["world"] is False and all(r["true"] is None for r in tags["rows"])  # no --world: no true tags


def test_true_tags_are_marked_only_with_the_world(lens_log: Path, lens_artifacts: Path, small_world_dir: Path) -> None:
    app = create_app({"LOG": str(lens_log), "ARTIFACTS": str(lens_artifacts), "WORLD": str(small_world_dir)})
    world = World(small_world_dir)
    track = 7
    tags = app.test_client().get(f"/tracks/{track}.json").get_json()["tags"]

    indptr, indices = world.true_tags_indptr, world.true_tags_indices
    true = {world.catalog.tag_names[i] for i in indices[indptr[track] : indptr[track + 1]]}
    assert tags["world"] is True and {r["tag"] for r in tags["rows"] if r["true"]} == true


@pytest.mark.parametrize("url, status, message", [
    ("/tracks/99999999.json", 404, "track == 99999999, must be a catalog id in [0, 3000)"),
    ("/tracks/3.json?user=x", 400, "user == 'x', must be an integer listener id"),
])
def test_bad_track_requests_get_one_line(app: Flask, url: str, status: int, message: str) -> None:
    response = app.test_client().get(url)
    assert response.status_code == status and response.get_json() == {"error": message}


def test_without_artifacts_the_pages_are_not_there(lens_log: Path) -> None:
    client = create_app({"LOG": str(lens_log)}).test_client()
    assert client.get("/recommenders").status_code == 404
    assert "Recommenders" not in client.get("/experiments").get_data(as_text=True)


def test_serve_refuses_an_artifacts_path_that_is_not_a_directory(lens_log: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(abtest_cli, ["serve", "--log", str(lens_log), "--artifacts", str(tmp_path / "none")])
    assert result.exit_code == 2 and "does not exist" in result.output and "Traceback" not in result.output
