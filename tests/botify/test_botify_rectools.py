"""The file bridge to RecTools and the course: the log exported in RecTools' columns, course lists served."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from click.testing import CliRunner
from flask import Flask

from botify import eventlog
from botify.cli import main
from contracts.columns import RecToolsColumns
from tests.botify.conftest import write_experiments

# rectools.Columns as RecTools 0.x spells them (rectools/columns.py): what Dataset.construct reads.
RECTOOLS_INTERACTION_COLUMNS = ["user_id", "item_id", "weight", "datetime"]


def test_export_writes_rectools_interactions(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app()
    client = app.test_client()
    sent = [(3, 10, 1.0), (3, 11, 0.25), (5, 12, 0.8)]
    for user, track, time in sent:
        assert client.post(f"/next/{user}", json={"track": track, "time": time}).status_code == 200
    eventlog.close_log(app)
    out = tmp_path / "rectools"

    result = CliRunner().invoke(main, ["export", "--format", "rectools", "--log", str(tmp_path / "log" / "events.duckdb"), "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert "Exported 3 events" in result.output
    frame = pd.read_csv(out / "interactions.csv", parse_dates=[RecToolsColumns.DATETIME])
    assert list(frame.columns) == RECTOOLS_INTERACTION_COLUMNS == list(RecToolsColumns.ALL)
    assert sorted(frame[["user_id", "item_id", "weight"]].itertuples(index=False, name=None)) == sorted(sent)
    assert pd.api.types.is_datetime64_any_dtype(frame["datetime"])
    again = CliRunner().invoke(main, ["export", "--format", "rectools", "--log", str(tmp_path / "log" / "events.duckdb"), "--out", str(out)])
    assert again.exit_code != 0 and "not empty" in again.output


def test_a_course_list_file_serves_through_botify(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    artifact = tmp_path / "course_lists"
    artifact.mkdir()
    lines = [{"user": 1, "tracks": [10, 42, 7]}, {"user": 2, "tracks": [5]}]
    (artifact / "lists.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    treatment = {"recommender": "indexed", "artifact": str(artifact)}
    experiments = write_experiments(tmp_path / "course.yml", {"name": "course", "serving": True, "treatments": [treatment, treatment]})
    client = make_app(experiments=experiments).test_client()

    # User 1 has just played track 10, the head of their list: the next listed track comes.
    assert client.post("/next/1", json={"track": 10, "time": 0.9}).get_json()["track"] == 42
    assert client.post("/next/2", json={"track": 3, "time": 0.9}).get_json()["track"] == 5
