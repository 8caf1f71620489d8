"""The environment holds exactly what requirements.lock lists, and the lock covers pyproject.toml.

scripts/setup.sh installs the lock with `pip install --require-hashes --no-deps`; these tests
catch an environment that drifted from it (a package upgraded, added or removed by hand, a
CUDA torch) and a lock that was not regenerated after pyproject.toml changed. The fix for
either is in the failure message.
"""

from __future__ import annotations

import importlib.metadata
import re
import sysconfig
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from tests.example_plugin import EXAMPLE_DISTRIBUTION

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"

# Installed by pip's own bootstrap: compared only when the lock pins them (setuptools is pinned,
# as the editable install's build backend).
INSTALLER_PACKAGES = frozenset({"pip", "setuptools", "wheel"})
# The project itself (editable) and the example plugin that a test installs for its duration.
NEVER_LOCKED = frozenset({"botify-lab", EXAMPLE_DISTRIBUTION})

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})\b")

RESYNC = "reinstall from the lock: rm -f .venv/.installed-* && ./scripts/setup.sh"
RELOCK = "regenerate the lock: ./scripts/lock.sh"


def canonical(name: str) -> str:
    """The normalised distribution name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Pin:
    version: str
    hashes: list[str] = field(default_factory=list)


def parse_lock(text: str) -> dict[str, Pin]:
    """name -> pinned version and its sha256 hashes, from pip-compile's output."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            name = canonical(match.group(1))
            if name in pins:
                raise ValueError(f"{name} is pinned twice in the lock")
            current = pins[name] = Pin(match.group(2))
        elif line and not line[0].isspace():
            current = None  # an option line (--find-links) or a comment ends a block
        if current is not None:
            current.hashes.extend(_HASH.findall(line))
    return pins


def installed_distributions() -> dict[str, list[str]]:
    """name -> installed versions (more than one means a broken install) in this interpreter's site-packages."""
    paths = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    found: dict[str, list[str]] = {}
    for dist in importlib.metadata.distributions(path=paths):
        found.setdefault(canonical(dist.metadata["Name"]), []).append(dist.version)
    return found


def differences(locked: dict[str, str], installed: dict[str, list[str]]) -> list[str]:
    """What keeps `installed` from being exactly `locked`; empty when they agree."""
    problems = []
    for name, version in sorted(locked.items()):
        versions = installed.get(name, [])
        if not versions:
            problems.append(f"{name}: locked at {version}, not installed")
        elif len(versions) > 1:
            problems.append(f"{name}: installed {len(versions)} times ({', '.join(versions)}), locked at {version}")
        elif Version(versions[0]) != Version(version):
            problems.append(f"{name}: installed {versions[0]}, locked at {version}")
    for name in sorted(installed.keys() - locked.keys() - INSTALLER_PACKAGES - NEVER_LOCKED):
        problems.append(f"{name}: installed {', '.join(installed[name])}, not in the lock")
    return problems


def locked_pins() -> dict[str, Pin]:
    return parse_lock(LOCK.read_text())


def test_installed_packages_are_exactly_the_locked_ones() -> None:
    locked = {name: pin.version for name, pin in locked_pins().items()}
    problems = differences(locked, installed_distributions())
    assert not problems, f"this environment differs from {LOCK.name} ({RESYNC}):\n" + "\n".join(problems)


def test_the_lock_satisfies_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [
        *project["build-system"]["requires"],
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["ml"],
        *project["project"]["optional-dependencies"]["dev"],
    ]
    pins = locked_pins()
    problems = []
    for line in wanted:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        pin = pins.get(canonical(requirement.name))
        if pin is None:
            problems.append(f"{requirement}: not in the lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement}: the lock has {pin.version}")
    assert not problems, f"{LOCK.name} is out of date with pyproject.toml ({RELOCK}):\n" + "\n".join(problems)


def test_every_pin_is_hashed_and_torch_is_the_cpu_build() -> None:
    pins = locked_pins()
    assert len(pins) > 50, "the lock looks truncated"
    assert [name for name, pin in pins.items() if not pin.hashes] == []
    assert pins["torch"].version == "2.13.0+cpu"
    assert [name for name in pins if name.startswith(("nvidia-", "cuda-")) or name == "triton"] == []


LOCK_SAMPLE = """\
#    ./scripts/lock.sh
#
--find-links /opt/wheels

numpy==2.4.6 \\
    --hash=sha256:89cd468399cfd2504718f0ba50e410dca55a170b61a02ad92bb18c8a65186e93 \\
    --hash=sha256:ed9749eef4cbd126da3dc1d6bcb3a57f5eb7ac6a6484146bdbf743f552dfc577
    # via
    #   botify-lab (pyproject.toml)
PyYAML==6.0.4 ; python_version >= "3.8" \\
    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000001
torch==2.13.0+cpu \\
    --hash=sha256:6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b
    # via botify-lab (pyproject.toml)

# The following packages are considered to be unsafe in a requirements file:
setuptools==84.2.1 \\
    --hash=sha256:3ff8b3b5492a0aa66960f4419365a86b84e013070d4313e4d4a6894f5d64d6bc
"""


def test_parse_lock_reads_names_versions_and_hashes() -> None:
    pins = parse_lock(LOCK_SAMPLE)
    assert {name: pin.version for name, pin in pins.items()} == {
        "numpy": "2.4.6",
        "pyyaml": "6.0.4",
        "torch": "2.13.0+cpu",
        "setuptools": "84.2.1",
    }
    assert [len(pin.hashes) for pin in pins.values()] == [2, 1, 1, 1]


def test_differences_catch_drift_from_the_lock() -> None:
    locked = {"numpy": "2.4.6", "torch": "2.13.0+cpu", "setuptools": "84.2.1"}
    exact = {"numpy": ["2.4.6"], "torch": ["2.13.0+cpu"], "setuptools": ["84.2.1"], "pip": ["23.2.1"], "botify-lab": ["0.1.0"]}
    assert differences(locked, exact) == []

    def drift(**changes: list[str]) -> list[str]:
        return differences(locked, {**exact, **changes})

    assert drift(numpy=["2.5.0"]) == ["numpy: installed 2.5.0, locked at 2.4.6"]  # upgraded outside the lock
    assert drift(torch=["2.13.0"]) == ["torch: installed 2.13.0, locked at 2.13.0+cpu"]  # PyPI's CUDA build
    assert drift(setuptools=["65.5.0"]) == ["setuptools: installed 65.5.0, locked at 84.2.1"]  # locked, so compared
    assert drift(requests=["2.34.2"]) == ["requests: installed 2.34.2, not in the lock"]
    assert drift(numpy=["2.4.6", "2.3.5"]) == ["numpy: installed 2 times (2.4.6, 2.3.5), locked at 2.4.6"]
    missing = {name: versions for name, versions in exact.items() if name != "numpy"}
    assert differences(locked, missing) == ["numpy: locked at 2.4.6, not installed"]
    assert drift(wheel=["0.48.0"]) == []  # pip's bootstrap packages count only when locked
