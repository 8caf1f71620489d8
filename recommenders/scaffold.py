"""A new plugin package, ready to install: what `recommenders new NAME` writes.

The package registers one recommender under NAME through the `botify.recommenders` entry point,
holds a working class to edit (the most popular unplayed, released track by the artist just
played, else the most popular overall), its tests over the contract kit (`recommenders.testing`)
and a CI workflow that installs it next to Botify Lab, runs its tests, `recommenders check` and
the paired gate against a baseline (`python -m sim.gate`). As generated, it passes all three.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")


class ScaffoldError(ValueError):
    """A name or a directory `write_plugin` cannot use; the message says which and why."""


def check_name(name: str, taken: set[str] | frozenset[str] = frozenset()) -> None:
    """Raise `ScaffoldError` unless `name` can be a registry name, a module name and an entry point.

    Args:
        name: the registry name to be (lower case letters, digits and underscores, starting with
            a letter: it is also the module's name).
        taken: names already registered; a plugin of the same name would shadow them.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise ScaffoldError(f"NAME == {name!r}, must be lower case letters, digits and underscores starting with a letter (e.g. my_model)")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"NAME == {name!r} is a Python keyword; pick another name")
    if name in taken:
        raise ScaffoldError(f"NAME == {name!r} is already registered; a plugin of that name would shadow it, pick another")


def names_of(name: str) -> dict[str, str]:
    """The names the package uses for registry name `name`: distribution, package, class."""
    camel = "".join(part.capitalize() for part in name.split("_") if part)
    return {
        "name": name,
        "distribution": "botify-" + name.replace("_", "-"),
        "package": f"botify_{name}",
        "cls": f"{camel}Recommender",
    }


def write_plugin(name: str, directory: Path, taken: set[str] | frozenset[str] = frozenset()) -> list[Path]:
    """Write the plugin package for `name` into `directory` (which must not exist); return the files written."""
    check_name(name, taken)
    if directory.exists():
        raise ScaffoldError(f"{directory} already exists; pass another --dir, or remove it first")
    names = names_of(name)
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{names['package']}/__init__.py": INIT,
        f"{names['package']}/{name}.py": MODULE,
        f"tests/test_{name}.py": TESTS,
        ".github/workflows/ci.yml": WORKFLOW,
        ".gitignore": GITIGNORE,
    }
    written = []
    for relative, template in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(template, names))
        written.append(path)
    return written


def _fill(template: str, names: dict[str, str]) -> str:
    """`template` with `{{key}}` replaced by `names[key]` (plain replacement: the files keep their own braces)."""
    for key, value in names.items():
        template = template.replace("{{" + key + "}}", value)
    return template


PYPROJECT = """\
# A Botify Lab recommender plugin. Installing this package registers `{{name}}`: the entry point
# below puts it in `recommenders list` and lets an experiment serve it by name.
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{{distribution}}"
version = "0.1.0"
description = "A Botify Lab recommender plugin: {{name}}."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["botify-lab", "numpy>=2.0"]

[project.entry-points."botify.recommenders"]
{{name}} = "{{package}}.{{name}}:{{cls}}"

[tool.setuptools.packages.find]
include = ["{{package}}*"]

[tool.pytest.ini_options]
filterwarnings = ["error"]
"""

README = """\
# {{distribution}}

A Botify Lab recommender plugin: `{{name}}` ({{package}}/{{name}}.py). As generated it answers the
most popular unplayed, released track by the artist just played; edit `_recommend` to make it yours.

    pip install -e .                                      # next to Botify Lab: registers `{{name}}`
    python -m pytest tests                                # the contract kit and the class's own tests
    python -m sim.world --out world                       # a world to check and gate against
    recommenders check {{name}} --world world --quick      # the contract, in seconds
    python -m sim.gate {{name}} --world world              # paired against sticky_artist on the same listeners

`.github/workflows/ci.yml` runs the same steps in CI. See `docs/plugins.md` in Botify Lab.
"""

INIT = '''\
"""A Botify Lab plugin: `{{name}}`, registered through the `botify.recommenders` entry point."""

from {{package}}.{{name}} import {{cls}}

__all__ = ["{{cls}}"]
'''

MODULE = '''\
"""`{{name}}`: the most popular unplayed, released track by the artist just played."""

from __future__ import annotations

from typing import Any

import numpy as np

from contracts.catalog import Catalog
from recommenders.base import Recommendation, Recommender, Request


class {{cls}}(Recommender):
    """The most popular unplayed, released track by the artist just played, else the most popular one.

    A starting point to edit: deterministic (propensity 1.0), no repeats while there is an
    alternative, released tracks only. Draw any randomness from `request.seed`, never from
    global state, so that the same simulation gets the same answers.

    Args:
        catalog: the public catalog.
        same_artist: whether to prefer the artist just played (False: most popular overall).
    """

    name = "{{name}}"

    def __init__(self, catalog: Catalog, *, same_artist: bool = True) -> None:
        super().__init__(catalog)
        if not isinstance(same_artist, bool):
            raise ValueError(f"same_artist == {same_artist!r}, must be true or false")
        self.same_artist = same_artist
        self._by_popularity: list[int] = np.argsort(-catalog.popularity, kind="stable").tolist()
        self._first_day = int(catalog.release_day.min())

    def get_params(self) -> dict[str, Any]:
        return {"same_artist": self.same_artist}

    def _recommend(self, request: Request) -> Recommendation:
        played = {*request.history, request.track}
        day = None if request.day is None else max(request.day, self._first_day)
        release_day = self.catalog.release_day

        def allowed(track: int) -> bool:
            return track not in played and (day is None or release_day[track] <= day)

        if self.same_artist:
            tracks = self.catalog.tracks_of_artist(int(self.catalog.artist[request.track]))
            by_popularity = tracks[np.argsort(-self.catalog.popularity[tracks], kind="stable")].tolist()
            for track in by_popularity:
                if allowed(track):
                    return Recommendation(track, 1.0)
        for track in self._by_popularity:
            if allowed(track):
                return Recommendation(track, 1.0)
        return Recommendation(self._by_popularity[0], 1.0)  # everything was played
'''

TESTS = '''\
"""The plugin's own tests: the Botify Lab contract kit, plus what this recommender promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from {{package}} import {{cls}}

from contracts.catalog import Catalog
from recommenders.base import Request
from recommenders.testing import check_recommender, write_catalog

# Nine tracks: artist 0 has 0-2, artist 1 has 3-5, artist 2 has 6-8; track 0 is the most popular.
ARTISTS = [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(write_catalog(tmp_path / "world", artist=ARTISTS))


def test_passes_the_contract(catalog: Catalog) -> None:
    report = check_recommender(lambda: {{cls}}(catalog), catalog)
    assert "batch agrees with single" in report.checks


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ((3,), 4),  # the artist's most popular unplayed track
        ((3, 4), 5),
        ((3, 4, 5), 0),  # the artist is exhausted: the most popular track overall
        ((0, 3, 4, 5), 1),
    ],
)
def test_answers_the_artists_most_popular_unplayed_track(catalog: Catalog, history: tuple[int, ...], expected: int) -> None:
    request = Request(user=1, track=history[-1], time=1.0, history=history, times=(1.0,) * len(history), seed=0)
    assert {{cls}}(catalog).recommend(request).track == expected


def test_unknown_parameter_is_refused(catalog: Catalog) -> None:
    with pytest.raises(TypeError, match="same_artst"):
        {{cls}}(catalog, same_artst=False)  # type: ignore[call-arg]
'''

WORKFLOW = """\
# Installs the plugin next to Botify Lab, then runs its tests, the contract check and the paired
# gate: the plugin against sticky_artist on the same simulated listeners, exit 1 on a regression.
# Set the repository variable BOTIFY_LAB_REPOSITORY (owner/name) to where Botify Lab lives.
name: ci

on:
  push:
  pull_request:

jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/checkout@v4
        with:
          repository: ${{ vars.BOTIFY_LAB_REPOSITORY }}
          path: botify-lab
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - name: Install Botify Lab and the plugin
        run: |
          python -m pip install -e ./botify-lab
          python -m pip install -e . pytest
      - name: The plugin's tests
        run: python -m pytest tests
      - name: A world
        run: python -m sim.world --out world
      - name: The contract
        run: recommenders check {{name}} --world world
      - name: The gate (paired against sticky_artist, 2,000 listeners)
        run: python -m sim.gate {{name}} --world world --baseline sticky_artist --episodes 2000 --max-p99-ms 10 --max-error-rate 0
"""

GITIGNORE = """\
__pycache__/
*.egg-info/
build/
world/
botify-lab/
"""
