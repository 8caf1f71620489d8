#!/usr/bin/env bash
# Sets everything up (./scripts/setup.sh), then the static checks (ruff; mypy on every package, as pyproject.toml lists them;
# lint-imports: the floors of docs/architecture.md) and the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check --quiet .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
