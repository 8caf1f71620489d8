#!/usr/bin/env bash
# Sets everything up (./scripts/setup.sh), checks the floors (lint-imports, docs/architecture.md)
# and runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
