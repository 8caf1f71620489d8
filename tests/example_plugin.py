"""Installing the example plugin package (examples/botify-plugin-example) for the duration of a test.

Builds a wheel from a copy of the package (so the source tree stays clean) and installs it
without dependencies, build isolation or an index (so it works offline), and uninstalls it afterwards unless it was installed
before. Import `installed_example_plugin` from here in any test package that needs the plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples" / "botify-plugin-example"
EXAMPLE_DISTRIBUTION = "botify-plugin-example"
EXAMPLE_NAME = "recent_artist_mix"  # the registry name its entry point declares


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def _installed() -> bool:
    try:
        importlib.metadata.distribution(EXAMPLE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@contextmanager
def installed_example_plugin(work_dir: Path) -> Iterator[None]:
    """Within the block, the example plugin is installed in this interpreter's environment."""
    if _installed():  # e.g. a developer's `pip install -e examples/botify-plugin-example`
        yield
        return
    source = work_dir / "source"
    shutil.copytree(EXAMPLE_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    # pip builds a wheel from the copy with the environment's setuptools, then installs it.
    _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(source))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        _pip("uninstall", "--yes", EXAMPLE_DISTRIBUTION)
        sys.modules.pop("botify_plugin_example.recent_artist_mix", None)
        sys.modules.pop("botify_plugin_example", None)
        importlib.invalidate_caches()
