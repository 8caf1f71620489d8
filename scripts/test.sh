#!/usr/bin/env bash
# Sets everything up (./scripts/setup.sh), then the static checks (ruff; mypy on contracts, botify and sim;
# lint-imports: the floors of docs/architecture.md) and the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check --quiet .
.venv/bin/mypy contracts botify sim
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
