"""Stored lists written by RecTools users and the course (JSON lines) load as artifacts, checked line by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.catalog import Catalog
from recommenders import registry
from recommenders.base import Request
from recommenders.builtin._artifacts import ArtifactError


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text)
    return directory


def test_user_lists_load_and_serve(tiny_catalog: Catalog, tmp_path: Path) -> None:
    directory = _write(tmp_path / "a", "lists.jsonl", '{"user": 7, "tracks": [4, 2, 9]}\n\n{"user": 8, "tracks": []}\n')
    model = registry.make("indexed", tiny_catalog, {}, directory)
    assert model.recommend(Request(user=7, track=4, time=1.0, history=(4,), times=(1.0,))).track == 2
    assert 0 <= model.recommend(Request(user=99, track=0, time=1.0)).track < tiny_catalog.n_tracks  # the fallback answers


def test_track_lists_load_for_i2i(tiny_catalog: Catalog, tmp_path: Path) -> None:
    directory = _write(tmp_path / "b", "neighbours.jsonl", '{"track": 3, "tracks": [5, 6]}\n')
    model = registry.make("i2i", tiny_catalog, {}, directory)
    assert model.recommend(Request(user=1, track=3, time=1.0, history=(3,), times=(1.0,))).track == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"user": 1, "tracks": [1]}\n{"user": 2, "tracks": [1, 2}\n', "line 2: not JSON"),
        ('{"user": 1, "items": [1]}\n', 'line 1: must be an object with exactly the keys "user" and "tracks"'),
        ('{"user": "u1", "tracks": [1]}\n', "line 1: user == 'u1', must be an integer id"),
        ('{"user": 1, "tracks": [1, 2.5]}\n', "line 1: tracks must be a list of integer track ids"),
        ('{"user": 1, "tracks": [1, 10]}\n', "line 1: track 10 is not in the catalog (ids 0..9"),
        ('{"user": 1, "tracks": [1, 1]}\n', "line 1: a track is listed twice"),
        ('{"user": 1, "tracks": [1]}\n{"user": 1, "tracks": [2]}\n', "line 2: user 1 already has a list"),
    ],
)
def test_bad_lines_are_named(tiny_catalog: Catalog, tmp_path: Path, text: str, message: str) -> None:
    directory = _write(tmp_path / "bad", "lists.jsonl", text)
    with pytest.raises(ArtifactError) as error:
        registry.make("indexed", tiny_catalog, {}, directory)
    assert str(directory / "lists.jsonl") in str(error.value) and message in str(error.value)
